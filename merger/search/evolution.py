"""The evolutionary search for merge weights (PriME): gradient-free, with nevergrad.

Weights are bounded to [-1.5, 1.5] and the search starts at zero, the base model, as PriME
does; further starting points (the uniform average) are evaluated next, so the search never
ends below them. Fitness = utility - alpha x similarity to the sharers. Every trial is kept;
the best is the best one fully evaluated, not the optimizer's guess: an evaluation may stop a
candidate early (racing, scoring.Evaluator) and give an estimate the optimizer learns from but
that never wins.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from merger.search.options import OPTIMIZERS

BOUND = 1.5


@dataclass(frozen=True)
class Trial:
    weights: tuple[float, ...]
    utility: float
    similarity: float | None
    fitness: float
    complete: bool = True  # False: an estimate from part of the held-out examples (racing)


@dataclass
class SearchResult:
    best: Trial | None  # None: stopped before the first trial
    trials: list[Trial] = field(default_factory=list)
    seconds: float = 0.0
    optimizer: str = ""


# weights -> (utility, similarity), or (utility, similarity, complete) from an evaluation that can stop early
Evaluate = Callable[[np.ndarray], tuple]


def best_of(trials: list[Trial], alpha: float) -> Trial:
    """The fully evaluated trial with the highest fitness at `alpha`: any search's points
    serve any alpha, since every trial keeps its utility and similarity."""
    complete = [t for t in trials if t.complete] or trials
    return max(complete, key=lambda t: t.utility - alpha * (t.similarity or 0.0))


def evolve(
    evaluate: Evaluate,
    dimensions: int,
    *,
    budget: int,
    alpha: float = 0.0,
    optimizer: str = "NGOpt",
    bound: float = BOUND,
    seed: int = 0,
    on_trial: Callable[[int, int, Trial], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    starts: tuple = (),
) -> SearchResult:
    import warnings

    import nevergrad as ng

    # NGOpt hands small budgets to scipy's COBYLA, which warns about the tolerance and the
    # evaluation count nevergrad sets: notes for nevergrad, not for the user.
    warnings.filterwarnings("ignore", message="COBYLA: Invalid (RHOEND|MAXFUN)", category=UserWarning)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
    parametrization = ng.p.Array(init=np.zeros(dimensions)).set_bounds(-bound, bound)
    parametrization.random_state = np.random.RandomState(seed)
    search = ng.optimizers.registry[optimizer](parametrization=parametrization, budget=budget, num_workers=1)
    # The base model is the first candidate, then the given starts: nevergrad asks the last
    # suggestion first.
    for start in [*reversed(starts[: budget - 1]), np.zeros(dimensions)]:
        search.suggest(np.clip(np.asarray(start, dtype=np.float64), -bound, bound))
    started = time.perf_counter()
    trials: list[Trial] = []
    for number in range(1, budget + 1):
        if should_stop():
            break
        candidate = search.ask()
        weights = np.asarray(candidate.value, dtype=np.float64)
        utility, sim, *rest = evaluate(weights)
        fitness = utility - alpha * (sim or 0.0)
        search.tell(candidate, -fitness)
        trial = Trial(tuple(float(w) for w in weights), utility, sim, fitness, bool(rest[0]) if rest else True)
        trials.append(trial)
        if on_trial:
            on_trial(number, budget, trial)
    return SearchResult(
        best=best_of(trials, alpha) if trials else None,
        trials=trials,
        seconds=time.perf_counter() - started,
        optimizer=optimizer,
    )
