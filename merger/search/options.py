"""The choices a merge search offers, in one place (the search, the scoring, the nightly
run's config and the CLI read them from here). Light to import."""

OPTIMIZERS = ("NGOpt", "CMA", "TwoPointsDE", "OnePlusOne", "RandomSearch")  # nevergrad's names
MERGES = ("elementwise", "updates")  # sum of A and of B matrices (PriME), or sum of B·A
PROBE_TOKENS = 24  # tokens of each probe answer compared with the sharers' (the privacy term)
