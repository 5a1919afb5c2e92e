"""Training data: the user's history as examples, their encoding into token ids, the task
metrics and the public corpora the benchmarks and the hub are built from.

Imports nothing else of `merger`.
"""
