"""The benchmark's statistics: task metrics (the same functions Myna's merge scoring uses),
bootstrap intervals, and the AUROC and rank statistics of the privacy attack."""

from __future__ import annotations

import numpy as np

from assistant.tasks import TASKS
from merger.data import metrics

BOOTSTRAP = 1000


def aggregate(task: str, predictions: list[str], golds: list[str]) -> dict[str, float]:
    """Every metric of the task (merger.data.metrics: the dispatch merge scoring uses too)."""
    return metrics.task_scores(TASKS[task].metric, predictions, golds, TASKS[task].labels)


def primary(task: str) -> tuple[str, bool]:
    """The metric the gain is measured on, and whether higher is better."""
    return metrics.PRIMARY[TASKS[task].metric]


def _resamples(n: int, seed: int):
    """The bootstrap's draws of n questions with replacement, the same for a given seed."""
    rng = np.random.default_rng(seed)
    for _ in range(BOOTSTRAP):
        yield rng.integers(0, n, n)


def gain(task: str, value: float, base: float) -> float:
    """Relative gain of a score over the baseline's on the task's primary metric (NaN when
    the baseline scores 0); positive is better whichever way the metric runs."""
    _, higher = primary(task)
    return ((value - base) if higher else (base - value)) / base if base else float("nan")


def difference(task: str, value: float, reference: float) -> float:
    """A score minus the reference's on the primary metric, positive when the score is better
    whichever way the metric runs."""
    _, higher = primary(task)
    return value - reference if higher else reference - value


def bootstrap(task: str, predictions: list[str], golds: list[str], seed: int = 0) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {}
    for pick in _resamples(len(golds), seed):
        for name, value in aggregate(task, [predictions[i] for i in pick], [golds[i] for i in pick]).items():
            samples.setdefault(name, []).append(value)
    return {name: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for name, v in samples.items()}


def paired_gains(
    task: str, methods: dict[str, list[str]], baseline: list[str], golds: list[str], seed: int = 0
) -> dict[str, list[float]]:
    """95 % interval of each method's relative gain over the baseline on the primary metric,
    resampling questions together for both (paired): with a few dozen questions the two
    methods' own intervals overlap even when one is reliably better, and this says whether
    a difference is more than the draw of questions. The baseline is scored once per draw."""
    return _paired(task, methods, baseline, golds, seed, lambda value, base: gain(task, value, base) if base else None)


def paired_differences(
    task: str, methods: dict[str, list[str]], reference: list[str], golds: list[str], seed: int = 0
) -> dict[str, list[float]]:
    """95 % interval of each method's score minus the reference's on the primary metric
    (positive: the method is better, whichever way the metric runs), questions resampled
    together: whether one merge beats another by more than the draw of questions."""
    return _paired(task, methods, reference, golds, seed, lambda value, base: difference(task, value, base))


def _paired(task, methods, baseline, golds, seed, compare) -> dict[str, list[float]]:
    """The 2.5th and 97.5th percentiles over the bootstrap's draws of compare(method's score,
    baseline's score) on the primary metric; a draw where compare gives None is left out."""
    name, _ = primary(task)
    found: dict[str, list[float]] = {method: [] for method in methods}
    for pick in _resamples(len(golds), seed):
        gold = [golds[i] for i in pick]
        base = aggregate(task, [baseline[i] for i in pick], gold)[name]
        for method, predictions in methods.items():
            value = compare(aggregate(task, [predictions[i] for i in pick], gold)[name], base)
            if value is not None:
                found[method].append(value)
    return {
        method: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if v else [float("nan")] * 2
        for method, v in found.items()
    }


def rank_correlation(x, y) -> float:
    """Spearman's rank correlation; tied values share their mean rank."""
    if len(x) < 3:
        return float("nan")

    def ranks(values):
        values = np.asarray(values, dtype=float)
        out = np.empty(len(values))
        out[np.argsort(values, kind="stable")] = np.arange(len(values))
        for value in np.unique(values):
            out[values == value] = out[values == value].mean()
        return out

    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def similarity_predicts_attack(privacy: dict, family: str = "merged") -> tuple[float, int]:
    """Does what the privacy penalty lowers (output similarity: to the closest sharer for
    Myna's merges, "merged"; the mean over the sharers, or that mean beyond the base, for the
    published fitness's, "published" and "excess") go with what the attack finds (AUROC on the sharers' items)? (rank
    correlation, merges counted)."""
    pairs = [
        (r["similarity"], r["auroc_mean"])
        for by_user in privacy.get(family, {}).values()
        for r in by_user.values()
        if r.get("similarity") is not None
    ]
    return (rank_correlation(*zip(*pairs)) if len(pairs) >= 3 else float("nan")), len(pairs)
