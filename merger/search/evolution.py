"""The evolutionary search for merge weights (PriME): gradient-free, with nevergrad.

Weights are bounded to [-1.5, 1.5] and the search starts at zero, the base model, as PriME
does. Fitness = utility - alpha x similarity to the closest sharer. Every trial is kept; the
best is the best one actually evaluated, not the optimizer's guess.
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


@dataclass
class SearchResult:
    best: Trial
    trials: list[Trial] = field(default_factory=list)
    seconds: float = 0.0
    optimizer: str = ""


Evaluate = Callable[[np.ndarray], tuple[float, float | None]]  # weights -> (utility, similarity)


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
    search.suggest(np.zeros(dimensions))  # the base model is the first candidate
    started = time.perf_counter()
    trials: list[Trial] = []
    for number in range(1, budget + 1):
        if should_stop():
            break
        candidate = search.ask()
        weights = np.asarray(candidate.value, dtype=np.float64)
        utility, sim = evaluate(weights)
        fitness = utility - alpha * (sim or 0.0)
        search.tell(candidate, -fitness)
        trial = Trial(tuple(float(w) for w in weights), utility, sim, fitness)
        trials.append(trial)
        if on_trial:
            on_trial(number, budget, trial)
    best = max(trials, key=lambda t: t.fitness)
    return SearchResult(best=best, trials=trials, seconds=time.perf_counter() - started, optimizer=optimizer)
