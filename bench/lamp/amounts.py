"""A stage: OPPU and RAG with part of each user's profile (its newest part), against the whole."""

from __future__ import annotations

import numpy as np

from bench.lamp.scores import aggregate, primary


def run(bench, task: str, dataset, plan) -> dict:
    rag = tuple(plan.rag_with_adapters)
    out = {}
    for fraction in plan.fractions:
        if fraction == 1.0:
            continue
        rows = {"OPPU": [], f"RAG {rag[0]} k={rag[1]}": [], "non-personalized": [], "profile_items": []}
        for user in dataset.users():
            questions = dataset.of(user)
            db = bench.store(task, user, questions, fraction)
            pct = int(fraction * 100)
            trained = bench.train_oppu(task, user, db, name=f"oppu-{pct}")
            golds = [q.output for q in questions]
            oppu = (trained.path, None) if trained.path else (None, rag)  # a cold start: memory alone
            for method, adapter, use in (("OPPU", *oppu), (f"RAG {rag[0]} k={rag[1]}", None, rag)):
                result = bench.predict(task, user, questions, f"{method} ({pct}% of the profile)", db, adapter, use)
                rows[method].append((list(result.predictions.values()), golds))
            rows["profile_items"].append(db.execute("SELECT COUNT(*) FROM snippets").fetchone()[0])
        name, _ = primary(task)
        out[str(fraction)] = {
            method: aggregate(task, [p for preds, _ in pairs for p in preds], [g for _, gs in pairs for g in gs])[name]
            for method, pairs in rows.items()
            if method not in ("non-personalized", "profile_items")
        }
        out[str(fraction)]["snippets_per_user"] = float(np.mean(rows["profile_items"]))
    return out
