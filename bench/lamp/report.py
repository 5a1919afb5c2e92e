"""The benchmark's report: the numbers `summary` computed, as markdown and plots. It computes
nothing of its own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.lamp.plan import FAMILIES, attack_key
from bench.lamp.summary import GOAL_EXCESS, GOAL_LOSS


def markdown(results: dict) -> str:
    lines = [
        f"Every stage, summed over the invocations that computed it: {results.get('stage_seconds', 0) / 60:.0f} min; "
        f"wall time of the last invocation (stages found in the cache are not redone): "
        f"{results['wall_seconds'] / 60:.1f} min; highest process peak recorded {results['peak_mib'] / 1024:.2f} GiB.",
        "",
    ]
    for task, summary in results["tasks"].items():
        name = summary["primary_metric"]
        others = [m for m in next(iter(summary["methods"].values()))["overall"] if m != name]
        sampled = summary.get("manifest", {}).get("sample")
        lines += [
            f"### {task}: {summary['questions']} questions of {len(summary['users'])} users "
            f"({_names(summary['users'])})",
            "",
        ]
        if sampled:
            lines += [
                f"A sample (seed {sampled['seed']}) of {sampled['users']} users of {sampled['of_users']}, "
                f"with their {summary['questions']} of the {sampled['of_questions']} questions.",
                "",
            ]
        histories = summary.get("manifest", {}).get("histories")
        if histories:
            lines += [
                "Each user's history cut to its newest items: "
                + ", ".join(f"{user} {size}" for user, size in sorted(histories.items()))
                + ".",
                "",
            ]
        header = (
            f"| method | {name} (95% CI) | {' | '.join(others)} | gain vs non-personalized (95% CI, paired) "
            "| model time / user | adapter / user |"
        )
        lines += [header, "|" + "---|" * (header.count("|") - 1)]
        marks = {
            summary.get("default_method"): "Myna's default",
            summary.get("nightly_method"): "Myna's default after a nightly run",
        }
        for method, row in summary["methods"].items():
            low, high = row["ci95"][name]
            cells = [f"{row['overall'][name]:.4f} ({low:.3f}-{high:.3f})"] + [
                f"{row['overall'][o]:.4f}" for o in others
            ]
            size = f"{row['adapter_bytes_per_user'] / 2**20:.1f} MiB" if row["adapter_bytes_per_user"] else "-"
            seconds = row["model_seconds_per_user"]
            label = f"**{method}** ({marks[method]})" if method in marks else method
            lines.append(
                f"| {label} | {' | '.join(cells)} | {_gain(row)} | "
                f"{seconds:.0f} s + {row['inference_seconds_per_user']:.0f} s answering | {size} |"
            )
        lines.append("")
        lines += joined_markdown(summary)
        lines += merges_markdown(summary)
        lines += nightly_markdown(summary)
        lines += steps_markdown(summary)
        cold = summary.get("cold_start") or {}
        if cold:
            lines += [
                f"{len(cold)} of {len(summary['users'])} users had too little history to train an adapter "
                f"({', '.join(f'{u}: {n} examples' for u, n in sorted(cold.items()))}); every method that needs "
                "their adapter answers them as Myna would: with memory alone, by the default settings.",
                "",
            ]
        privacy = summary["privacy"]
        if privacy is None:
            lines += ["Privacy and amount-of-data stages: not run (a run of some methods only).", ""]
        else:
            lines += privacy_markdown(privacy) + privacy_goal_markdown(summary.get("privacy_goal") or [])
        if summary["data_amounts"]:
            lines += ["", f"{name} with part of each profile:", ""]
            for fraction, row in summary["data_amounts"].items():
                cells = ", ".join(f"{m} {v:.4f}" for m, v in row.items() if m != "snippets_per_user")
                lines.append(f"- {float(fraction):.0%} ({row['snippets_per_user']:.0f} snippets per user): {cells}")
        if summary.get("diagnostics"):
            lines += ["", *diagnostics_markdown(summary["diagnostics"])]
        lines.append("")
    return "\n".join(lines)


def merges_markdown(summary: dict) -> list[str]:
    """Each merge against the uniform average and the best single adapter, question by
    question (the issue's bar for a merge search is beating both); nothing for older results."""
    compared = {method: row["against"] for method, row in summary["methods"].items() if row.get("against")}
    if not compared:
        return []
    name = summary["primary_metric"]
    references = list(dict.fromkeys(r for against in compared.values() for r in against))
    header = "| merge | " + " | ".join(f"vs {r} (95% CI, paired)" for r in references) + " |"
    lines = [
        f"Each merge's {name} minus the reference's (positive: the merge is better), questions resampled "
        "together for both:",
        "",
        header,
        "|" + "---|" * (header.count("|") - 1),
    ]
    for method, against in compared.items():
        cells = []
        for reference in references:
            found = against.get(reference)
            cells.append(
                f"{found['difference']:+.4f} ({found['ci95'][0]:+.3f} to {found['ci95'][1]:+.3f})" if found else "-"
            )
        lines.append(f"| {method} | {' | '.join(cells)} |")
    return lines + ["", *_separated(compared, references), ""]


def _separated(compared: dict, references: list[str]) -> list[str]:
    """Which merges beat a reference by more than the draw of questions, or else the smallest
    difference the run could have found against each (the median over its merges)."""
    beaten = [
        f"{method} beats {reference}"
        for method, against in compared.items()
        for reference, found in against.items()
        if found["ci95"][0] > 0
    ]
    if beaten:
        return [f"Separated (paired interval above zero): {'; '.join(beaten)}."]
    sizes = {
        reference: np.median(
            [a[reference]["detectable"] for a in compared.values() if "detectable" in a.get(reference, {})]
        )
        for reference in references
        if any("detectable" in a.get(reference, {}) for a in compared.values())
    }
    said = ", ".join(f"{value:.3f} against {reference}" for reference, value in sizes.items())
    return ["No merge's paired interval lies above zero."] + (
        [
            f"The smallest difference this run would have found four times in five (80 % power, two-sided 5 %; "
            f"the median over the merges): {said}."
        ]
        if said
        else []
    )


def privacy_goal_markdown(goals: list[dict]) -> list[str]:
    """The issue's goal for each penalized merge: within +0.02 of the never-seen reference at
    no more than 5 % of the task metric lost against the same search without the penalty."""
    if not goals:
        return []
    lines = [
        "",
        f"The privacy goal: a merge's sharers' AUROC at most {GOAL_EXCESS:+.2f} above the reference that never saw "
        f"their items, at a loss of at most {GOAL_LOSS:.0%} of the task metric against the same search without "
        "a penalty (Myna's search at alpha 0 for the baselines):",
        "",
        "| merge | users | AUROC | above the reference (95% CI over users) | task metric lost (negative: gained) "
        "| against | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    for goal in goals:
        low, high = goal["excess_ci95"]
        row = f"**{goal['row']}** (shipped)" if goal.get("shipped") else goal["row"]
        lines.append(
            f"| {row} | {goal['users']} | {goal['auroc']:.3f} | {goal['excess']:+.3f} ({low:+.3f} to "
            f"{high:+.3f}) | {goal['loss']:+.1%} | {goal['without_penalty']} | {'met' if goal['met'] else 'not met'} |"
        )
    return lines


def joined_markdown(summary: dict) -> list[str]:
    """Which rows came from another run (`--rescore --join`), and why they may stand here."""
    return [
        f"Rows from another run ({joined['from']}, code {joined['code']}), joined with `--join`: "
        f"{', '.join(joined['rows'])}. The rows both runs have ({', '.join(joined['alike'])}) answered every "
        "question alike in both, so the two versions answer alike.\n"
        for joined in summary.get("joined", [])
    ]


def nightly_markdown(summary: dict) -> list[str]:
    """What `myna personalize` as shipped (and with each variant's options) did for each user:
    published, refused by its gate, or skipped (a cold start); nothing for runs without the row."""
    lines = _nightly_lines(summary.get("nightly_method"), summary.get("nightly") or {}, "its shipped options")
    for row, runs in (summary.get("nightly_variants") or {}).items():
        lines += _nightly_lines(row, runs, "these options")
    return lines


def _nightly_lines(row: str | None, runs: dict, options: str) -> list[str]:
    if not runs:
        return []
    counts = {status: sorted(u for u, r in runs.items() if r["status"] == status) for status in STATUS_WORDS}
    said = "; ".join(
        f"{STATUS_WORDS[status]} for {len(users)} ({_names(users)})" for status, users in counts.items() if users
    )
    minutes = np.mean([r["seconds"] or 0 for r in runs.values()]) / 60
    lines = [
        f"{row}: `myna personalize` with {options}, once per user "
        f"({minutes:.1f} min per user on average): {said}. A user with nothing published is answered as "
        "memory alone answers them.",
        "",
    ]
    refused = {u: r for u, r in runs.items() if r["status"] in ("no-improvement", "failed")}
    lines += [f"- {u}: {r['message']}" for u, r in sorted(refused.items())]
    return lines + ([""] if refused else [])


STATUS_WORDS = {
    "published": "an adapter published",
    "no-improvement": "refused by the gate (its best not better than the adapter before, or none)",
    "skipped": "skipped (too little history: a cold start)",
    "failed": "stopped with a message to the user",
}


def steps_markdown(summary: dict) -> list[str]:
    """Each step of the pipeline against the same pipeline without it, question by question."""
    found = [
        (method, without, d)
        for method, row in summary["methods"].items()
        for without, d in row.get("steps", {}).items()
    ]
    if not found:
        return []
    name = summary["primary_metric"]
    lines = [
        f"What each step adds: the row's {name} minus the row without that step (positive: the step helps), "
        "questions resampled together:",
        "",
        "| row | without the step | difference (95% CI, paired) |",
        "|---|---|---|",
    ]
    for method, without, d in found:
        low, high = d["ci95"]
        lines.append(f"| {method} | {without} | {d['difference']:+.4f} ({low:+.3f} to {high:+.3f}) |")
    return lines + [""]


def _gain(row: dict) -> str:
    """The gain, with its paired interval when the run computed one (older results have none)."""
    if "gain_ci95" not in row:
        return f"{row['gain']:+.1%}"
    low, high = row["gain_ci95"]
    return f"{row['gain']:+.1%} ({low:+.0%} to {high:+.0%})"


def _against(references: list, whose: str) -> str:
    """The reference figure a membership AUROC is read against, when the run has it."""
    known = [r for r in references if r is not None]
    return f" [{whose}, which never saw them: {np.mean(known):.3f}]" if known else ""


def privacy_markdown(privacy: dict) -> list[str]:
    lines = []
    if not privacy.get("oppu"):
        lines += ["No user had an adapter to attack: no membership inference.", ""]
        privacy = {**privacy, "merged": {}}
    lines += ["Membership inference (AUROC; 0.5 = nothing given away):", ""]
    if privacy.get("examples"):
        n = min(privacy["examples"].values())
        lines += [
            f"{n} members against {n} unseen items per author; by chance alone one author's AUROC "
            f"has a standard deviation of {privacy['chance_spread']:.2f}.",
            "",
        ]
    if privacy.get("oppu"):
        lines += [
            "Beside each figure, in brackets: the same attack on the same items with an adapter for the task that "
            "never saw them (what the attack finds when there is nothing to find; bench/lamp/privacy.py `reference`).",
            "",
        ]
        lines.append(
            f"- users' own OPPU adapters, on their own training data: {np.nanmean(list(privacy['oppu'].values())):.3f}"
            + _against(list(privacy.get("oppu_reference", {}).values()), "other users' adapters")
        )
    terms = {name: family.term for name, family in FAMILIES.items()}
    for family, term in terms.items():
        for label, by_user in sorted(privacy.get(family, {}).items()):
            values = [v["auroc_mean"] for v in by_user.values()]
            sims = [v["similarity"] for v in by_user.values() if v["similarity"] is not None]
            of = len(privacy["oppu"])
            users = "" if len(by_user) == of else f", {len(by_user)} of {of} users"
            lines.append(
                f"- merges `{label}`, on the sharers' training data: {np.nanmean(values):.3f}"
                + _against([v.get("reference") for v in by_user.values()], "the user's own adapter")
                + (f" ({term} {np.mean(sims):.2f}{users})" if sims else "")
            )
    for family in FAMILIES:
        found = privacy.get(attack_key(family)) or {"merges": 0}
        if found["merges"] >= 3:
            lines += [
                "",
                f"{terms[family][0].upper()}{terms[family][1:]} (what the penalty lowers) against attack AUROC, "
                f"over {found['merges']} merges: rank correlation {found['rank_correlation']:.2f}.",
            ]
    if "canaries" in privacy:
        canaries = privacy["canaries"]
        lines += [
            "",
            f"Canaries: {canaries['secrets']} secrets planted {canaries['repeats']} times in one user's "
            f"chats; exposure out of {canaries['max_exposure']:.1f} bits:",
            "",
        ]
        for where, value in canaries.items():
            if isinstance(value, dict):
                lines.append(
                    f"- {where}: {value['recovered']} of {canaries['secrets']} recovered, "
                    f"mean exposure {value['mean_exposure']:.2f}"
                )
    return lines


def diagnostics_markdown(diagnostics: dict) -> list[str]:
    lines = [
        "What retrieval gave the model, and what it did with it (bench/lamp/diagnose.py):",
        "",
        "| method | best ROUGE-1 of the gold vs a retrieved snippet | answer words found in a snippet "
        "| answers copied from a snippet | context words |",
        "|---|---|---|---|---|",
    ]
    for method, row in diagnostics["rag"].items():
        lines.append(
            f"| {method} | {row['gold_vs_best_snippet_rouge1']:.3f} | {row['answer_words_found_in_a_snippet']:.0%} "
            f"| {row['answers_copied_from_a_snippet']:.0%} | {row['context_words']:.0f} |"
        )
    likelihood = diagnostics["held_out_loglik_per_token"]
    if likelihood:
        lines += [
            "",
            "Held-out log-likelihood per token of the users' own outputs (what training and the merge search "
            "optimize; higher is better): "
            + ", ".join(f"{label} {value:.3f}" for label, value in likelihood.items())
            + ".",
        ]
    words = diagnostics["answer_words"]
    lines += [
        "",
        f"Answer length in words: gold {words['gold']:.1f}; "
        + ", ".join(f"{m} {v:.1f}" for m, v in words.items() if m != "gold")
        + ".",
    ]
    return lines


def plots(results: dict, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for task, summary in results["tasks"].items():
        name = summary["primary_metric"]
        methods = list(summary["methods"])
        values = [summary["methods"][m]["overall"][name] for m in methods]
        errors = np.array(
            [
                [v - summary["methods"][m]["ci95"][name][0], summary["methods"][m]["ci95"][name][1] - v]
                for m, v in zip(methods, values)
            ]
        ).T
        fig, ax = plt.subplots(figsize=(9, 0.35 * len(methods) + 1.5))
        ax.barh(methods, values, xerr=errors, color="#4a7ab5")
        ax.invert_yaxis()
        ax.set_xlabel(f"{name} (95% bootstrap interval)")
        ax.set_title(f"{task}: utility per method")
        fig.tight_layout()
        made.append(folder / f"{task}-utility.png")
        fig.savefig(made[-1], dpi=110)
        plt.close(fig)

        attacked = summary["privacy"] or {}
        for family, kind in FAMILIES.items():
            prefix, utility = f"{kind.prefix}-a", kind.utility
            stem = "privacy-utility" if family == "merged" else f"{family}-privacy-utility"
            merged = attacked.get(family, {})
            alphas = sorted((float(label[len(prefix) :]), label) for label in merged if label.startswith(prefix))
            if len(alphas) < 2:
                continue
            fig, ax = plt.subplots(figsize=(6, 4))
            utilities = [np.mean([v["utility"] for v in merged[label].values()]) for _, label in alphas]
            attack = [np.nanmean([v["auroc_mean"] for v in merged[label].values()]) for _, label in alphas]
            ax.plot(attack, utilities, "o-")
            for (alpha, label), x, y in zip(alphas, attack, utilities):
                # The sweep's larger alphas run for fewer users (Plan.sweep_users): say for how many.
                ax.annotate(
                    f"alpha {alpha:g} ({len(merged[label])} users)", (x, y), textcoords="offset points", xytext=(4, 4)
                )
            ax.set_xlabel("membership-inference AUROC on sharers' data (lower: more private)")
            ax.set_ylabel(f"{utility} (higher: more useful)")
            ax.set_title(f"{task}: privacy/utility over the penalty weight ({prefix[:-2]})")
            fig.tight_layout()
            made.append(folder / f"{task}-{stem}.png")
            fig.savefig(made[-1], dpi=110)
            plt.close(fig)

        goals = summary.get("privacy_goal") or []
        if goals:
            made.append(_goal_plot(plt, task, name, summary["methods"], goals, folder / f"{task}-privacy-goal.png"))

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


def _goal_plot(plt, task: str, name: str, methods: dict, goals: list[dict], path: Path) -> Path:
    """Every attacked merge as a point: how far its sharers' AUROC is above the never-seen
    reference (with its interval over users) against its task metric; the goal's corner shaded."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for goal in goals:
        low, high = goal["excess_ci95"]
        y = methods[goal["row"]]["overall"][name]
        ax.errorbar(
            goal["excess"],
            y,
            xerr=[[goal["excess"] - low], [high - goal["excess"]]],
            fmt="s" if goal.get("shipped") else "o",
            color="#c0392b" if goal.get("shipped") else "#4a7ab5",
            capsize=3,
        )
        ax.annotate(goal["row"], (goal["excess"], y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    # The loss line of the shipped search (its own search without the penalty), else the first's.
    against = next((g for g in goals if g.get("shipped")), goals[0])["without_penalty"]
    plain = methods[against]["overall"][name]
    ax.axvspan(ax.get_xlim()[0], GOAL_EXCESS, ymin=0, ymax=1, color="#2ecc71", alpha=0.08)
    ax.axhline(plain * (1 - GOAL_LOSS), color="grey", linewidth=0.8, linestyle="--")
    ax.axvline(GOAL_EXCESS, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("sharers' AUROC above the never-seen reference (95% CI over users; lower: more private)")
    ax.set_ylabel(f"{name} of the merge's answers (higher: more useful)")
    ax.set_title(f"{task}: each merge against the privacy goal (square: shipped)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(results: dict, folder: Path) -> None:
    from assistant.atomic import atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "results.json", json.dumps(results, indent=1, default=float) + "\n")
    atomic_write_text(folder / "results.md", markdown(results) + "\n")
    plots(results, folder / "plots")


def _names(users: list[str], shown: int = 12) -> str:
    """The users' names, the first dozen of a long list (a real split has thousands)."""
    return ", ".join(users) if len(users) <= shown else f"{', '.join(users[:shown])} and {len(users) - shown} more"
