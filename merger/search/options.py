"""The choices a merge search offers, in one place (the search, the scoring, the nightly
run's config and the CLI read them from here). Light to import."""

OPTIMIZERS = ("NGOpt", "CMA", "TwoPointsDE", "OnePlusOne", "RandomSearch")  # nevergrad's names
MERGES = ("elementwise", "updates")  # sum of A and of B matrices (PriME), or sum of B·A
PROBE_TOKENS = 24  # tokens of each probe answer compared with the sharers' (the privacy term)
ANSWER_TOKENS = 32  # tokens generated per held-out example when a merge is scored on its answers
# The privacy term: similarity to the CLOSEST sharer on a few probe prompts (ROUGE-L), or, as
# PriME publishes it, the MEAN over the sharers of the task metric between the candidate's
# answers and each sharer adapter's answers to all of the user's held-out inputs; or "excess":
# that mean counting only what the candidate shares with each sharer BEYOND what the model
# without any community adapter already shares with it (floored at zero). Without the floor
# and the reference, a search at alpha >= 1 wins the mean term by breaking the model (weights
# summing to ~3.5: answers that match nobody, LaMP_7, 30 November).
# "likelihood" is not about answers' words: it is how much more likely the candidate finds
# each sharer adapter's own answers (to the probes) than the model without any community
# adapter does, which is what a loss-based membership-inference attack looks at, computed
# from the sharers' adapters alone.
# "weights" looks at no output at all: it is the L1 norm of the merge's weights (each
# adapter's, averaged over layers with per-layer weights), LoraHub's regularizer. Nothing is
# generated for it, so a night with it is about a third shorter. Neither it nor "closest"
# was seen to lower what a membership attack finds on LaMP_7 (docs/benchmarks.md, "The
# decisive run on LaMP_7").
PRIVACY_TERMS = ("closest", "mean", "excess", "likelihood", "weights")
ANSWER_TERMS = ("mean", "excess")  # the terms that compare answers to every held-out input
