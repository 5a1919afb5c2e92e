"""The numbers of one task: each method's metrics with bootstrap intervals, its gain over
the non-personalized model, what its models cost, and the privacy figures' statistics."""

from __future__ import annotations

import numpy as np

from bench.lamp.plan import FAMILIES, attack_key
from bench.lamp.scores import (
    aggregate,
    bootstrap,
    chance_spread,
    gain,
    paired_gains,
    primary,
    similarity_predicts_attack,
)


def summarize(task: str, dataset, predictions: dict, costs: dict, amounts: dict, privacy: dict, plan) -> dict:
    users = dataset.users()
    golds = {q.id: q.output for q in dataset.questions}
    name, _ = primary(task)
    table = {}
    asked = {q.id for u in users for q in dataset.of(u)}
    questions = [q for q in dataset.questions if q.id in asked]
    ids, gold = [q.id for q in questions], [golds[q.id] for q in questions]

    def answers(method):
        return [predictions[method][q.user].predictions[q.id] for q in questions]

    said = {method: answers(method) for method in predictions}
    intervals = paired_gains(task, said, said["non-personalized"], gold, plan.seed)
    for method, by_user in predictions.items():
        preds = said[method]
        table[method] = {
            "overall": aggregate(task, preds, gold),
            "ci95": bootstrap(task, preds, gold, plan.seed),
            "gain_ci95": intervals[method],
            # Kept so a report can be scored again when the stage cache is gone.
            "answers": dict(zip(ids, preds)),
            "per_user": {
                u: aggregate(task, list(by_user[u].predictions.values()), [golds[i] for i in by_user[u].predictions])
                for u in users
            },
            "inference_seconds_per_user": float(np.mean([by_user[u].seconds for u in users])),
        }
    base = table["non-personalized"]["overall"][name]
    for method, row in table.items():
        row["gain"] = gain(task, row["overall"][name], base)
        row.update(_costs(costs[method]))
    return {
        "task": task,
        "primary_metric": name,
        "manifest": dataset.manifest,
        "users": users,
        "questions": len(dataset.questions),
        "methods": table,
        "data_amounts": amounts,
        "privacy": {**privacy, **privacy_statistics(privacy)} if privacy is not None else None,
    }


def privacy_statistics(privacy: dict) -> dict:
    """How far from 0.5 chance alone takes one author's AUROC, and whether what the penalty
    lowers (similarity to the closest sharer) goes with what the attack finds."""
    out = {}
    if privacy.get("examples"):
        out["chance_spread"] = chance_spread(min(privacy["examples"].values()))
    for family in FAMILIES:
        rho, count = similarity_predicts_attack(privacy, family)
        out[attack_key(family)] = {"rank_correlation": rho, "merges": count}
    return out


def _costs(records: list) -> dict:
    """Seconds to make a method's model per user, its file size, its stage's memory mark."""
    found = [r for r in records if r]
    return {
        "model_seconds_per_user": float(np.mean([r.seconds or 0.0 for r in found])) if found else 0.0,
        "adapter_bytes_per_user": int(np.mean([r.bytes for r in found])) if found else 0,
        "peak_mib_of_its_stage": float(max(r.peak_mib or 0 for r in found)) if found else None,
    }
