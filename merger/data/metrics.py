"""The LaMP metrics: accuracy and macro-F1 for labels, MAE and RMSE for ratings, ROUGE-1
and ROUGE-L (F1) for text. Used by the merge search's fitness and by the benchmark.

ROUGE tokenizes as the rouge-score package does by default (lower case, runs of letters and
digits), without stemming, as LaMP's evaluation scripts call it.
"""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

_TOKEN = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _f1(overlap: int, predicted: int, reference: int) -> float:
    if overlap == 0 or predicted == 0 or reference == 0:
        return 0.0
    precision, recall = overlap / predicted, overlap / reference
    return 2 * precision * recall / (precision + recall)


def rouge_1(prediction: str, reference: str) -> float:
    p, r = Counter(tokens(prediction)), Counter(tokens(reference))
    return _f1(sum((p & r).values()), sum(p.values()), sum(r.values()))


def _lcs(a: list[str], b: list[str]) -> int:
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    p, r = tokens(prediction), tokens(reference)
    return _f1(_lcs(p, r), len(p), len(r))


def accuracy(predictions: list[str], references: list[str]) -> float:
    return sum(p.strip() == r.strip() for p, r in zip(predictions, references)) / max(len(references), 1)


def macro_f1(predictions: list[str], references: list[str], labels: list[str] | None = None) -> float:
    labels = labels or sorted(set(references))
    scores = []
    for label in labels:
        tp = sum(p == label and r == label for p, r in zip(predictions, references))
        fp = sum(p == label and r != label for p, r in zip(predictions, references))
        fn = sum(p != label and r == label for p, r in zip(predictions, references))
        scores.append(_f1(tp, tp + fp, tp + fn))
    return sum(scores) / max(len(scores), 1)


def rating(prediction: str) -> float | None:
    """The first number in a prediction; None if it has none (bounds are mae_rmse's concern)."""
    found = re.search(r"-?\d+(\.\d+)?", prediction)
    return float(found.group()) if found else None


def mae_rmse(predictions: list[str], references: list[str], low: int = 1, high: int = 5) -> tuple[float, float]:
    """A prediction that is not a number counts as the farthest possible rating (as LaMP does)."""
    errors = []
    for p, r in zip(predictions, references):
        gold = float(r)
        value = rating(p)
        if value is None or not low <= value <= high:
            value = low if abs(gold - low) > abs(gold - high) else high
        errors.append(abs(value - gold))
    n = max(len(errors), 1)
    return sum(errors) / n, math.sqrt(sum(e * e for e in errors) / n)


def label_of(prediction: str, labels: tuple[str, ...]) -> str:
    """The label a free-text answer names (the longest one mentioned), or the text itself."""
    text = prediction.strip().lower()
    named = [label for label in labels if label.lower() in text]
    return max(named, key=len) if named else prediction.strip()


# -- one dispatch for every caller: merge scoring and the benchmark ------------------------------

PRIMARY = {
    "rouge": ("ROUGE-1", True),
    "accuracy": ("accuracy", True),
    "mae": ("MAE", False),
}  # (name, higher is better)


def task_scores(
    kind: str, predictions: list[str], references: list[str], labels: tuple[str, ...] = ()
) -> dict[str, float]:
    """Every metric LaMP reports for a task of this kind ("rouge", "accuracy" or "mae")."""
    if kind == "rouge":
        return {
            "ROUGE-1": float(np.mean([rouge_1(p, r) for p, r in zip(predictions, references)])),
            "ROUGE-L": float(np.mean([rouge_l(p, r) for p, r in zip(predictions, references)])),
        }
    if kind == "accuracy":
        found = [label_of(p, labels) for p in predictions]
        return {"accuracy": accuracy(found, references), "F1": macro_f1(found, references, list(labels))}
    mae, rmse = mae_rmse(predictions, references)
    return {"MAE": mae, "RMSE": rmse}


def fitness(kind: str, predictions: list[str], references: list[str], labels: tuple[str, ...] = ()) -> float:
    """What a merge search maximizes for a task of this kind: the sum of the task's metrics,
    as PriME's published code reduces them (ROUGE-1 + ROUGE-L, accuracy + F1), or minus the
    sum of MAE and RMSE."""
    scores = task_scores(kind, predictions, references, labels)
    return -sum(scores.values()) if kind == "mae" else sum(scores.values())
