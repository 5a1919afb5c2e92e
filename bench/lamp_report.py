"""The benchmark's numbers: metrics with bootstrap intervals, gains, costs, privacy, plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.lamp_privacy import chance_spread, similarity_predicts_attack
from merger import metrics
from assistant.tasks import TASKS

BOOTSTRAP = 1000


def per_question(task: str, prediction: str, gold: str) -> dict[str, float]:
    kind = TASKS[task].metric
    if kind == "rouge":
        return {"ROUGE-1": metrics.rouge_1(prediction, gold), "ROUGE-L": metrics.rouge_l(prediction, gold)}
    if kind == "accuracy":
        label = metrics.label_of(prediction, TASKS[task].labels)
        return {"accuracy": float(label == gold), "label": label}
    mae, _ = metrics.mae_rmse([prediction], [gold])
    return {"error": mae}


def aggregate(task: str, predictions: list[str], golds: list[str]) -> dict[str, float]:
    kind = TASKS[task].metric
    if kind == "rouge":
        rows = [per_question(task, p, g) for p, g in zip(predictions, golds)]
        return {name: float(np.mean([r[name] for r in rows])) for name in ("ROUGE-1", "ROUGE-L")}
    if kind == "accuracy":
        labels = [metrics.label_of(p, TASKS[task].labels) for p in predictions]
        return {"accuracy": metrics.accuracy(labels, golds), "F1": metrics.macro_f1(labels, golds, list(TASKS[task].labels))}
    mae, rmse = metrics.mae_rmse(predictions, golds)
    return {"MAE": mae, "RMSE": rmse}


def primary(task: str) -> tuple[str, bool]:
    """The metric the gain is measured on, and whether higher is better."""
    kind = TASKS[task].metric
    return {"rouge": ("ROUGE-1", True), "accuracy": ("accuracy", True), "mae": ("MAE", False)}[kind]


def bootstrap(task: str, predictions: list[str], golds: list[str], seed: int = 0) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    n = len(golds)
    samples: dict[str, list[float]] = {}
    for _ in range(BOOTSTRAP):
        pick = rng.integers(0, n, n)
        for name, value in aggregate(task, [predictions[i] for i in pick], [golds[i] for i in pick]).items():
            samples.setdefault(name, []).append(value)
    return {name: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for name, v in samples.items()}


def summarize(task: str, dataset, predictions: dict, costs: dict, amounts: dict, privacy: dict, plan) -> dict:
    users = dataset.users()
    golds = {q.id: q.output for q in dataset.questions}
    name, higher = primary(task)
    table = {}
    for method, by_user in predictions.items():
        ids = [q.id for u in users for q in dataset.of(u)]
        preds = [by_user[q.user]["predictions"][q.id] for q in dataset.questions if q.id in ids]
        gold = [golds[q.id] for q in dataset.questions if q.id in ids]
        table[method] = {
            "overall": aggregate(task, preds, gold),
            "ci95": bootstrap(task, preds, gold, plan.seed),
            "per_user": {u: aggregate(task, list(by_user[u]["predictions"].values()),
                                      [golds[i] for i in by_user[u]["predictions"]]) for u in users},
            "inference_seconds_per_user": float(np.mean([by_user[u]["seconds"] for u in users])),
        }
    base = table["non-personalized"]["overall"][name]
    for method, row in table.items():
        value = row["overall"][name]
        row["gain"] = ((value - base) if higher else (base - value)) / base if base else float("nan")
        row.update(_costs(costs[method]))
    return {"task": task, "primary_metric": name, "manifest": dataset.manifest, "users": users,
            "questions": len(dataset.questions), "methods": table, "data_amounts": amounts, "privacy": privacy}


def _costs(records: list[dict | None]) -> dict:
    """Seconds to make a method's model per user, its file size, its stage's memory mark."""
    found = [r for r in records if r]
    return {"model_seconds_per_user": float(np.mean([r.get("seconds", 0.0) for r in found])) if found else 0.0,
            "adapter_bytes_per_user": int(np.mean([r.get("bytes", 0) for r in found])) if found else 0,
            "peak_mib_of_its_stage": float(max(r.get("peak_mib") or 0 for r in found)) if found else None}


def data_amounts(bench, task: str, dataset, plan) -> dict:
    """OPPU and RAG with part of each user's profile (its newest part), against the whole."""
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
            oppu = (trained["path"], None) if trained["path"] else (None, rag)  # a cold start: memory alone
            for method, adapter, use in (("OPPU", *oppu), (f"RAG {rag[0]} k={rag[1]}", None, rag)):
                result = bench.predict(task, user, questions, f"{method} ({pct}% of the profile)", db, adapter, use)
                rows[method].append((list(result["predictions"].values()), golds))
            rows["profile_items"].append(db.execute("SELECT COUNT(*) FROM snippets").fetchone()[0])
        name, _ = primary(task)
        out[str(fraction)] = {
            method: aggregate(task, [p for preds, _ in pairs for p in preds], [g for _, gs in pairs for g in gs])[name]
            for method, pairs in rows.items() if method not in ("non-personalized", "profile_items")
        }
        out[str(fraction)]["snippets_per_user"] = float(np.mean(rows["profile_items"]))
    return out


# -- writing -----------------------------------------------------------------------------------------


def markdown(results: dict) -> str:
    lines = [f"Every stage, summed over the invocations that computed it: {results.get('stage_seconds', 0) / 60:.0f} min; "
             f"wall time of the last invocation (stages found in the cache are not redone): "
             f"{results['wall_seconds'] / 60:.1f} min; highest process peak recorded {results['peak_mib'] / 1024:.2f} GiB.", ""]
    for task, summary in results["tasks"].items():
        name, higher = primary(task)
        others = [m for m in next(iter(summary["methods"].values()))["overall"] if m != name]
        lines += [f"### {task}: {summary['questions']} questions of {len(summary['users'])} users "
                  f"({', '.join(summary['users'])})", ""]
        header = f"| method | {name} (95% CI) | {' | '.join(others)} | gain vs non-personalized | model time / user | adapter / user |"
        lines += [header, "|" + "---|" * (header.count("|") - 1)]
        default = summary.get("default_method")
        for method, row in summary["methods"].items():
            low, high = row["ci95"][name]
            cells = [f"{row['overall'][name]:.4f} ({low:.3f}-{high:.3f})"] + [f"{row['overall'][o]:.4f}" for o in others]
            size = f"{row['adapter_bytes_per_user'] / 2**20:.1f} MiB" if row["adapter_bytes_per_user"] else "-"
            seconds = row["model_seconds_per_user"]
            label = f"**{method}** (Myna's default)" if method == default else method
            lines.append(f"| {label} | {' | '.join(cells)} | {row['gain']:+.1%} | "
                         f"{seconds:.0f} s + {row['inference_seconds_per_user']:.0f} s answering | {size} |")
        lines.append("")
        cold = summary.get("cold_start") or {}
        if cold:
            lines += [f"{len(cold)} of {len(summary['users'])} users had too little history to train an adapter "
                      f"({', '.join(f'{u}: {n} examples' for u, n in sorted(cold.items()))}); every method that needs "
                      "their adapter answers them as Myna would: with memory alone, by the default settings.", ""]
        privacy = summary["privacy"]
        if not privacy.get("oppu"):
            lines += ["No user had an adapter to attack: no membership inference.", ""]
            privacy = {**privacy, "merged": {}}
        lines += ["Membership inference (AUROC; 0.5 = nothing given away):", ""]
        if privacy.get("examples"):
            n = min(privacy["examples"].values())
            lines += [f"{n} members against {n} unseen items per author; by chance alone one author's AUROC "
                      f"has a standard deviation of {chance_spread(n):.2f}.", ""]
        if privacy.get("oppu"):
            lines.append(f"- users' own OPPU adapters, on their own training data: "
                         f"{np.nanmean(list(privacy['oppu'].values())):.3f}")
        for label, by_user in sorted(privacy["merged"].items()):
            values = [v["auroc_mean"] for v in by_user.values()]
            sims = [v["similarity"] for v in by_user.values() if v["similarity"] is not None]
            users = "" if len(by_user) == len(privacy["oppu"]) else f", {len(by_user)} of {len(privacy['oppu'])} users"
            lines.append(f"- merges `{label}`, on the sharers' training data: {np.nanmean(values):.3f}"
                         + (f" (similarity to the closest sharer {np.mean(sims):.2f}{users})" if sims else ""))
        rho, count = similarity_predicts_attack(privacy)
        if count >= 3:
            lines += ["", f"Similarity to the closest sharer (what the penalty lowers) against attack AUROC, over "
                      f"{count} merges: rank correlation {rho:.2f}."]
        if "canaries" in privacy:
            canaries = privacy["canaries"]
            lines += ["", f"Canaries: {canaries['secrets']} secrets planted {canaries['repeats']} times in one user's "
                      f"chats; exposure out of {canaries['max_exposure']:.1f} bits:", ""]
            for where, value in canaries.items():
                if isinstance(value, dict):
                    lines.append(f"- {where}: {value['recovered']} of {canaries['secrets']} recovered, "
                                 f"mean exposure {value['mean_exposure']:.2f}")
        if summary["data_amounts"]:
            lines += ["", f"{name} with part of each profile:", ""]
            for fraction, row in summary["data_amounts"].items():
                cells = ", ".join(f"{m} {v:.4f}" for m, v in row.items() if m != "snippets_per_user")
                lines.append(f"- {float(fraction):.0%} ({row['snippets_per_user']:.0f} snippets per user): {cells}")
        if summary.get("diagnostics"):
            lines += ["", *diagnostics_markdown(summary["diagnostics"])]
        lines.append("")
    return "\n".join(lines)


def diagnostics_markdown(diagnostics: dict) -> list[str]:
    lines = ["What retrieval gave the model, and what it did with it (bench/lamp_diagnose.py):", "",
             "| method | best ROUGE-1 of the gold vs a retrieved snippet | answer words found in a snippet "
             "| answers copied from a snippet | context words |", "|---|---|---|---|---|"]
    for method, row in diagnostics["rag"].items():
        lines.append(f"| {method} | {row['gold_vs_best_snippet_rouge1']:.3f} | {row['answer_words_found_in_a_snippet']:.0%} "
                     f"| {row['answers_copied_from_a_snippet']:.0%} | {row['context_words']:.0f} |")
    likelihood = diagnostics["held_out_loglik_per_token"]
    lines += ["", "Held-out log-likelihood per token of the users' own outputs (what training and the merge search "
              "optimize; higher is better): " + ", ".join(f"{label} {value:.3f}" for label, value in likelihood.items()) + "."]
    words = diagnostics["answer_words"]
    lines += ["", f"Answer length in words: gold {words['gold']:.1f}; "
              + ", ".join(f"{m} {v:.1f}" for m, v in words.items() if m != "gold") + "."]
    return lines


def plots(results: dict, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for task, summary in results["tasks"].items():
        name, _ = primary(task)
        methods = list(summary["methods"])
        values = [summary["methods"][m]["overall"][name] for m in methods]
        errors = np.array([[v - summary["methods"][m]["ci95"][name][0], summary["methods"][m]["ci95"][name][1] - v]
                           for m, v in zip(methods, values)]).T
        fig, ax = plt.subplots(figsize=(9, 0.35 * len(methods) + 1.5))
        ax.barh(methods, values, xerr=errors, color="#4a7ab5")
        ax.invert_yaxis()
        ax.set_xlabel(f"{name} (95% bootstrap interval)")
        ax.set_title(f"{task}: utility per method")
        fig.tight_layout()
        made.append(folder / f"{task}-utility.png")
        fig.savefig(made[-1], dpi=110)
        plt.close(fig)

        merged = summary["privacy"]["merged"]
        alphas = sorted((float(label[7:]), label) for label in merged if label.startswith("prime-a"))
        if len(alphas) > 1:
            fig, ax = plt.subplots(figsize=(6, 4))
            utilities = [np.mean([v["utility"] for v in merged[label].values()]) for _, label in alphas]
            attack = [np.nanmean([v["auroc_mean"] for v in merged[label].values()]) for _, label in alphas]
            ax.plot(attack, utilities, "o-")
            for (alpha, _), x, y in zip(alphas, attack, utilities):
                ax.annotate(f"alpha {alpha:g}", (x, y), textcoords="offset points", xytext=(4, 4))
            ax.set_xlabel("membership-inference AUROC on sharers' data (lower: more private)")
            ax.set_ylabel("held-out log-likelihood per token (higher: more useful)")
            ax.set_title(f"{task}: privacy/utility over the penalty weight")
            fig.tight_layout()
            made.append(folder / f"{task}-privacy-utility.png")
            fig.savefig(made[-1], dpi=110)
            plt.close(fig)

        if summary["data_amounts"]:
            base = summary["methods"]["non-personalized"]["overall"][name]
            fractions = sorted(float(f) for f in summary["data_amounts"]) + [1.0]
            fig, ax = plt.subplots(figsize=(6, 4))
            full = {"OPPU": summary["methods"]["OPPU"]["overall"][name]}
            rag_name = next(m for m in summary["data_amounts"][str(fractions[0])] if m.startswith("RAG"))
            full[rag_name] = summary["methods"][rag_name]["overall"][name]
            for method in full:
                values = [summary["data_amounts"][str(f)][method] for f in fractions[:-1]] + [full[method]]
                ax.plot(fractions, [(v - base) / base for v in values], "o-", label=method)
            ax.axhline(0, color="grey", linewidth=0.8)
            ax.set_xlabel("share of each user's profile used")
            ax.set_ylabel(f"relative gain in {name} over non-personalized")
            ax.set_title(f"{task}: gain versus amount of user data")
            ax.legend()
            fig.tight_layout()
            made.append(folder / f"{task}-gain-vs-data.png")
            fig.savefig(made[-1], dpi=110)
            plt.close(fig)
    return made


def write(results: dict, folder: Path) -> None:
    from assistant.atomic import atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "results.json", json.dumps(results, indent=1, default=float) + "\n")
    atomic_write_text(folder / "results.md", markdown(results) + "\n")
    plots(results, folder / "plots")
