"""Why the methods score as they do: measurements behind the benchmark's reading.

- RAG: what retrieval put in the prompt, and what the model did with it. For each question,
  the best ROUGE-1 between the gold output and any retrieved snippet (could copying a
  retrieved item have helped?), the same for the model's answer (did it copy?), the share of
  answers that mostly copy a snippet, and the words of context added.
- Adapters: the held-out log-likelihood per token of the user's own outputs (what training and
  the merge search optimize), beside the ROUGE the table reports, so a gap between the two
  is visible rather than guessed.
- Decoding: the answer's length against the gold's, per method.

Everything here reuses cached predictions and adapters; nothing is generated again.
"""

from __future__ import annotations

import hashlib

import numpy as np

from bench.lamp.cache import cached
from merger.data import metrics


def rag(bench, dataset, stores: dict, predictions: dict, table: dict) -> dict:
    out = {}
    for method, spec in table.items():
        if not spec.rag:
            continue
        gold_best, answer_best, copies, words = [], [], 0, []
        for user in dataset.users():
            answers = predictions[method][user].predictions
            contexts = predictions[method][user].contexts
            for question in dataset.of(user):
                texts = contexts.get(question.id, [])
                answer = answers[question.id]
                gold_best.append(max((metrics.rouge_1(question.output, t) for t in texts), default=0.0))
                # Precision-like: how much of the answer is found in a snippet.
                overlap = max((_contained(answer, t) for t in texts), default=0.0)
                answer_best.append(overlap)
                copies += overlap >= 0.8
                words.append(sum(len(t.split()) for t in texts))
        out[method] = {
            "gold_vs_best_snippet_rouge1": float(np.mean(gold_best)),
            "answer_words_found_in_a_snippet": float(np.mean(answer_best)),
            "answers_copied_from_a_snippet": copies / max(len(answer_best), 1),
            "context_words": float(np.mean(words)),
        }
    return out


def _contained(answer: str, text: str) -> float:
    """Share of the answer's words that occur in `text`."""
    words = metrics.tokens(answer)
    if not words:
        return 0.0
    present = set(metrics.tokens(text))
    return sum(w in present for w in words) / len(words)


def lengths(dataset, predictions: dict) -> dict:
    gold = float(np.mean([len(q.output.split()) for q in dataset.questions]))
    out = {"gold": gold}
    for method, by_user in predictions.items():
        answers = [a for user in by_user.values() for a in user.predictions.values()]
        out[method] = float(np.mean([len(a.split()) for a in answers]))
    return out


def likelihoods(bench, dataset, stores: dict, models: dict) -> dict:
    """Held-out log-likelihood per token, on the examples the merge search scored: the base
    model, the user's own adapter, and each merge (whose value the search recorded)."""
    from merger.search import scoring

    rows: dict[str, list[float]] = {}
    for user in dataset.users():
        held_out = bench.examples(stores[user]).held_out[: bench.plan.held_out]
        if not models[user].own or not held_out:
            continue  # a cold start: no adapter of their own
        scoring_set = scoring.prepare(
            bench.base,
            held_out,
            bench.settings.system_prompt,
            max_length=bench.plan.max_length,
            probes=1,
            probe_tokens=1,
        )
        backend = scoring.TorchBackend(bench.base, [bench.lora(models[user].own)])
        try:
            for label, weight in (("base (no adapter)", 0.0), ("OPPU", 1.0)):
                backend.apply(np.full(1, weight))
                rows.setdefault(label, []).append(backend.mean_logprob(scoring_set))
        finally:
            backend.close()
        for label, record in models[user].merged().items():
            rows.setdefault(label, []).append(record.utility)
    return {label: float(np.mean(values)) for label, values in rows.items()}


def run(bench, task: str, dataset, stores: dict, predictions: dict, models: dict, table: dict, partial=False) -> dict:
    """`partial`: a run of some methods only, whose figures must not stand in for the whole
    run's in the cache."""
    name = (
        "diagnostics-" + hashlib.sha256(" ".join(sorted(table)).encode()).hexdigest()[:8] if partial else "diagnostics"
    )
    return cached(
        bench.work / task / f"{name}.json",
        lambda: {
            "rag": rag(bench, dataset, stores, predictions, table),
            "answer_words": lengths(dataset, predictions),
            "held_out_loglik_per_token": likelihoods(bench, dataset, stores, models),
        },
    )
