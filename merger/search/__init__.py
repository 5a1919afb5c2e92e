"""Finding the merge: weighted sums of adapters, the evolutionary search over weights,
choosing the sharers most like the user, and scoring a candidate on the user's history.

Imports `formats`, `data` and `training`.
"""
