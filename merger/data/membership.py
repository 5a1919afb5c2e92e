"""How much an adapter gives away of what it was trained on (its data card says it in words).

The loss attack of membership inference, on the user's own texts: an item's score is how much
the adapter lowers its loss against the base model; the AUROC of the scores of items it was
trained on against items held out from training (0.5: the adapter cannot tell them apart, so
whoever holds it cannot either; 1.0: every trained-on item is found). Read against two things
measured on the same items: the same attack with the base model alone (what tells the two sets
apart without any training, e.g. one set being easier text), and the spread chance alone gives
an AUROC of that many items.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

AUDIT_ITEMS = 32  # per side at most: enough for a figure, a few seconds on a laptop


@dataclass(frozen=True)
class Audit:
    auroc: float  # the adapter's attack: trained-on items against held-out ones
    reference: float  # the same items, the base model alone (score: its negative loss)
    chance_spread: float  # one standard deviation of the AUROC under chance, for these counts
    members: int
    others: int

    def as_card(self) -> dict:
        return {key: round(value, 4) if isinstance(value, float) else value for key, value in asdict(self).items()}


def auroc(members: list[float], others: list[float]) -> float:
    """Probability that a member scores higher than a non-member (ties count half)."""
    if not members or not others:
        return float("nan")
    m, o = np.asarray(members)[:, None], np.asarray(others)[None, :]
    return float(((m > o).sum() + 0.5 * (m == o).sum()) / (m.size * o.size))


def chance_spread(n: int, m: int | None = None) -> float:
    """Standard deviation of the AUROC of n members against m non-members (m = n if not given)
    when the scores say nothing (Mann-Whitney under the null): how far from 0.5 chance goes."""
    m = n if m is None else m
    return float(math.sqrt((n + m + 1) / (12 * n * m))) if n and m else float("nan")


def spread(items: list, limit: int = AUDIT_ITEMS) -> list:
    """Up to `limit` items spread evenly over the list (deterministic, not the first ones)."""
    if len(items) <= limit:
        return list(items)
    return [items[round(i * (len(items) - 1) / (limit - 1))] for i in range(limit)]


def measure(base_losses: tuple[list[float], list[float]], adapter_losses: tuple[list[float], list[float]]) -> Audit:
    """The audit from per-item losses: (members, others) under the base model and the adapter."""
    (base_in, base_out), (mine_in, mine_out) = base_losses, adapter_losses
    scores_in = [b - a for b, a in zip(base_in, mine_in)]
    scores_out = [b - a for b, a in zip(base_out, mine_out)]
    return Audit(
        auroc=auroc(scores_in, scores_out),
        reference=auroc([-x for x in base_in], [-x for x in base_out]),
        chance_spread=chance_spread(len(scores_in), len(scores_out)),
        members=len(scores_in),
        others=len(scores_out),
    )
