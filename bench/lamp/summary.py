"""The numbers of one task: each method's metrics with bootstrap intervals, its gain over
the non-personalized model, what its models cost, and the privacy figures' statistics."""

from __future__ import annotations

import numpy as np

from bench.lamp.models import MERGE_REFERENCES
from bench.lamp.plan import FAMILIES, attack_key, family_of
from bench.lamp.scores import (
    aggregate,
    bootstrap,
    difference,
    gain,
    paired_differences,
    paired_gains,
    primary,
    similarity_predicts_attack,
)
from merger.data.membership import chance_spread


def summarize(
    task: str,
    dataset,
    predictions: dict,
    costs: dict,
    amounts: dict,
    privacy: dict,
    plan,
    merges: dict[str, str] | None = None,
    steps: list[tuple[str, str]] = (),
) -> dict:
    """`merges`: the rows that are merges alone, each with its merge's label
    (models.merge_rows); `steps`: pairs of rows whose paired difference is what one step of
    the pipeline adds (plan.steps)."""
    merges = merges or {}
    users = dataset.users()
    said = {
        method: {q: a for by in by_user.values() for q, a in by.predictions.items()}
        for method, by_user in predictions.items()
    }
    table = answer_scores(task, dataset, said, plan.seed, merges, steps)
    for method, by_user in predictions.items():
        table[method]["inference_seconds_per_user"] = float(np.mean([by_user[u].seconds for u in users]))
        table[method].update(_costs(costs[method]))
    return {
        "task": task,
        "primary_metric": primary(task)[0],
        "manifest": dataset.manifest,
        "users": users,
        "questions": len(dataset.questions),
        "methods": table,
        "data_amounts": amounts,
        "privacy": {**privacy, **privacy_statistics(privacy)} if privacy is not None else None,
        "privacy_goal": privacy_goal(task, table, privacy, merges),
    }


def answer_scores(
    task: str,
    dataset,
    said: dict[str, dict[str, str]],
    seed: int,
    merges: dict[str, str] | None = None,
    steps: list[tuple[str, str]] = (),
) -> dict:
    """What each method's row takes from its answers alone (`said`: method -> question id ->
    answer): its metrics and their intervals, its gain over the non-personalized model, its
    score per user, and, for each of the `merges`, the paired difference from the uniform
    average and the best single adapter when the run has them; for each pair of `steps`, the
    row's paired difference from the row without that step ("steps"). The answers are kept in the
    row, so a stored report can be scored again when the stage cache is gone (run.rescore)."""
    name, _ = primary(task)
    questions = dataset.questions
    ids, gold = [q.id for q in questions], [q.output for q in questions]
    of_user: dict[str, list] = {}
    for q in questions:
        of_user.setdefault(q.user, []).append(q)
    answers = {method: [by_id[i] for i in ids] for method, by_id in said.items()}
    intervals = paired_gains(task, answers, answers["non-personalized"], gold, seed)
    table = {}
    for method, preds in answers.items():
        table[method] = {
            "overall": aggregate(task, preds, gold),
            "ci95": bootstrap(task, preds, gold, seed),
            "gain_ci95": intervals[method],
            "answers": dict(zip(ids, preds)),
            "per_user": {
                u: aggregate(task, [said[method][q.id] for q in asked], [q.output for q in asked])
                for u, asked in sorted(of_user.items())
            },
        }
    for reference in MERGE_REFERENCES:
        compared = {m: answers[m] for m in merges or {} if m != reference and m in answers}
        if reference in answers and compared:
            for method, interval in paired_differences(task, compared, answers[reference], gold, seed).items():
                table[method].setdefault("against", {})[reference] = {
                    "difference": difference(task, table[method]["overall"][name], table[reference]["overall"][name]),
                    "ci95": interval,
                    "detectable": detectable(interval),
                }
    for method, without in steps:
        if method in answers and without in answers:
            interval = paired_differences(task, {method: answers[method]}, answers[without], gold, seed)[method]
            table[method].setdefault("steps", {})[without] = {
                "difference": difference(task, table[method]["overall"][name], table[without]["overall"][name]),
                "ci95": interval,
            }
    base = table["non-personalized"]["overall"][name]
    for row in table.values():
        row["gain"] = gain(task, row["overall"][name], base)
    return table


# The normal quantiles of a two-sided 5 % test and of 80 % power.
Z_TEST, Z_POWER = 1.959964, 0.841621


def detectable(interval: list[float]) -> float:
    """The smallest true difference a paired comparison with this 95 % interval would find
    (interval entirely on one side of zero) four times in five: (1.96 + 0.84) standard errors,
    the standard error read from the interval's width. What a run that separated nothing
    could still have told apart."""
    low, high = interval
    return float((high - low) / (2 * Z_TEST) * (Z_TEST + Z_POWER))


# The issue's privacy goal for a merge with the privacy penalty: its sharers' AUROC at most
# this far above the reference that never saw their items, at most this share of the task
# metric lost against the same search without the penalty.
GOAL_EXCESS, GOAL_LOSS = 0.02, 0.05


def privacy_goal(task: str, table: dict, privacy: dict | None, merges: dict[str, str]) -> list[dict]:
    """For each merge row that was attacked (`merges`: row -> its merge's label, "prime-a0.5"):
    the attack's AUROC on the sharers' items minus the never-seen reference's on the same
    items, user by user (mean and a normal 95 % interval over users); its task metric's loss
    against the same search without a penalty (its family's alpha 0; Myna's search at alpha 0
    for the baselines: uniform, best single, LoraHub's L1 on the weights); whether both meet
    the goal; and whether it is the merge the nightly run ships (Myna's search at its alpha)."""
    if not privacy:
        return []
    from merger.nightly.config import PersonalizeConfig

    name = primary(task)[0]
    by_label = {label: row for row, label in merges.items()}
    shipped = f"{FAMILIES['merged'].prefix}-a{PersonalizeConfig().alpha:g}"
    found = []
    for row, label in merges.items():
        family = family_of(label)
        attacked = next((privacy[f][label] for f in FAMILIES if label in (privacy.get(f) or {})), {})
        excess = [
            v["auroc_mean"] - v["reference"]
            for v in attacked.values()
            if v.get("reference") is not None and not np.isnan(v["auroc_mean"])
        ]
        plain = by_label.get(f"{FAMILIES[family or 'merged'].prefix}-a0")
        if not excess or plain is None:
            continue
        spread = Z_TEST * np.std(excess, ddof=1) / np.sqrt(len(excess)) if len(excess) > 1 else float("nan")
        loss = 0.0 if plain == row else -gain(task, table[row]["overall"][name], table[plain]["overall"][name])
        mean = float(np.mean(excess))
        found.append(
            {
                "row": row,
                "without_penalty": plain,
                "shipped": label == shipped,
                "users": len(excess),
                "auroc": float(np.mean([v["auroc_mean"] for v in attacked.values()])),
                "excess": mean,
                "excess_ci95": [mean - spread, mean + spread],
                "loss": loss,
                "met": bool(mean <= GOAL_EXCESS and loss <= GOAL_LOSS),
            }
        )
    return found


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
