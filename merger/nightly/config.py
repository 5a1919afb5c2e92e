"""What a personalization run may be told: the one place its options, defaults and limits
live (the CLI reads its defaults and choices from here). Light to import."""

from __future__ import annotations

from dataclasses import dataclass

from assistant.errors import MynaError
from merger.search.options import MERGES, OPTIMIZERS, PRIVACY_TERMS, PROBE_TOKENS

BACKENDS = ("torch", "file", "scales")  # how candidates are scored
METRICS = ("likelihood", "task")  # held-out log-likelihood, or the task's metric on generated outputs


@dataclass(frozen=True)
class PersonalizeConfig:
    # Candidates the search tries. 12 answered within noise of 40 on both LaMP tasks, the
    # whole nightly run as shipped against the same run with 40, question by question (LaMP_4
    # -0.009, paired -0.023 to +0.003; LaMP_7 +0.002, -0.017 to +0.020), in 40 % less time
    # (docs/benchmarks.md, "The nightly run's search budget").
    budget: int = 12
    # Community adapters merged at most. 3 (PriME's n_sim) saved no time on 10 LaMP_7 users (107
    # against 109 s a night) and answered below 8 (-0.014, paired -0.034 to +0.006) and below
    # the own adapter alone (-0.015, -0.031 to -0.002) (docs/benchmarks.md, "The pool size").
    max_adapters: int = 8
    alpha: float = 0.5  # weight of the privacy penalty (similarity to the sharers)
    privacy: str = "closest"  # the penalty's similarity: to the closest sharer, or PriME's mean over them
    optimizer: str = "NGOpt"
    merge: str = "elementwise"
    rank: int | None = None  # rank budget of an "updates" merge (None: ranks concatenated)
    per_layer: bool = False  # PriME's option: one weight per adapter and layer, not per adapter
    backend: str = "torch"
    metric: str = "likelihood"  # or "task": the task's metric on generated outputs
    task: str | None = None
    held_out: int = 50
    probes: int = 6
    probe_tokens: int = PROBE_TOKENS
    max_length: int = 192
    # OPPU on top of the merge: above the merge alone on both LaMP tasks (docs/benchmarks.md, bench lamp).
    train_own: bool = True
    # Beside it, the own adapter trained alone (on the bare model): the check in llama.cpp keeps
    # whichever of the two answers the held-out inputs better, so a merge that fits the history's
    # likelihood but answers worse (issue 44's held-out pair) does not hold the own adapter back.
    own_alone: bool = False
    # The check in llama.cpp asks the held-out inputs as `myna ask` does: with what memory
    # recalls for each from the rest of the history, and its copy bias (merger/nightly/served.py).
    # Off: on LaMP_4 that check published and refused the wrong adapters, -0.033 below the
    # check without memory (docs/benchmarks.md, "The check asked with memory").
    check_memory: bool = False
    # A cold start: below this many examples no adapter work is done. On LaMP_7 the user's own
    # adapter from 24 items answered below memory alone and below the bare model, from 48 it
    # gained (docs/benchmarks.md, "gain versus amount of user data").
    min_examples: int = 48
    seed: int = 0

    def check(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise MynaError(f"Unknown optimizer '{self.optimizer}'; choose one of {', '.join(OPTIMIZERS)}.")
        if self.merge not in MERGES:
            raise MynaError(f"Unknown merge '{self.merge}'; choose {' or '.join(MERGES)}.")
        if self.backend not in BACKENDS:
            raise MynaError(f"Unknown backend '{self.backend}'; choose {', '.join(BACKENDS)}.")
        if self.backend == "scales" and self.merge != "updates":
            raise MynaError("llama.cpp scales compute the sum of updates: use --merge updates with --backend scales.")
        if self.backend == "scales" and self.per_layer:
            raise MynaError("llama.cpp scales weigh whole adapters: use --backend torch or file with --per-layer.")
        if self.budget < 2 or self.max_adapters < 1 or self.alpha < 0 or self.min_examples < 0:
            raise MynaError(
                "The budget must be at least 2, at least one adapter used, and alpha and the minimum history not "
                "negative."
            )
        if self.privacy not in PRIVACY_TERMS:
            raise MynaError(f"Unknown privacy term '{self.privacy}'; choose {', '.join(PRIVACY_TERMS)}.")
        if self.metric not in METRICS:
            raise MynaError(f"Unknown metric '{self.metric}'; choose {' or '.join(METRICS)}.")
