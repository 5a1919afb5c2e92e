"""A whole benchmark run: for each task, the users' stores and adapters, their merges, every
method's answers, then the measurements beyond the table, the summary and the report.

    python -m bench lamp [--quick] [--tasks LaMP_4,LaMP_7] [--lamp QUESTIONS OUTPUTS]

Stages cache their results under bench/results/cache/, so a run that crashes resumes where it
stopped. Results go to bench/results/lamp[-quick]/: results.json, results.md, plots/*.png.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, replace
from pathlib import Path

from bench.common import RESULTS
from bench.datasets import BUILDERS, Dataset, load
from bench.lamp import amounts, diagnose, privacy, report, summary
from bench.lamp.cache import peak_mib, run_name, stage_totals
from bench.lamp.models import UserModels
from bench.lamp.plan import (
    QUICK,
    TERM_FAMILY,
    Method,
    Plan,
    as_served,
    default_method,
    family_of,
    methods_for,
    nightly_method,
)
from bench.lamp.records import Answers
from bench.lamp.workspace import Workspace


def dataset_for(
    task: str, plan: Plan, work: Path, lamp: tuple[Path, Path] | None, sample: tuple[int, int] | None = None
) -> Dataset:
    """The task's questions: the LaMP pair given, or the plan's own; with `sample` (users,
    seed), a reproducible subset of their users."""
    dataset = _whole_dataset(task, plan, work, lamp)
    return dataset.sample(*sample) if sample else dataset


def _whole_dataset(task: str, plan: Plan, work: Path, lamp: tuple[Path, Path] | None) -> Dataset:
    folder = work / "datasets"
    questions, outputs = folder / f"{task}_questions.json", folder / f"{task}_outputs.json"
    if lamp:
        return load(*lamp)
    if not questions.exists():
        built = BUILDERS[task](
            users=plan.users,
            questions=plan.questions,
            profile=plan.profile[task],
            seed=plan.seed,
            words=plan.article_words,
        )
        built.write(folder)
    dataset = load(questions, outputs)
    dataset.manifest = json.loads((folder / f"{task}_manifest.json").read_text())
    return dataset


def chosen(table: dict[str, Method], methods: str | None) -> dict[str, Method]:
    """The rows a run computes: all, or those whose name matches `methods` (a regular
    expression), always with the non-personalized baseline every gain is measured against."""
    if not methods:
        return table
    try:
        pattern = re.compile(methods, re.IGNORECASE)
    except re.error as error:
        raise SystemExit(
            f"--methods {methods!r} is not a regular expression ({error}); try e.g. 'RAG|^OPPU'."
        ) from None
    kept = {name: spec for name, spec in table.items() if name == "non-personalized" or pattern.search(name)}
    if len(kept) == 1:
        raise SystemExit(f"--methods {methods!r} matches no method; the methods are: {', '.join(table)}.")
    return kept


def run(
    plan: Plan,
    lamp: tuple[Path, Path] | None = None,
    on_stage=print,
    methods: str | None = None,
    sample: tuple[int, int] | None = None,
) -> dict:
    """Every stage of the plan; with `methods`, only the rows that match and the models they
    need (no privacy or amount-of-data stages, whose figures are about the whole table); with
    `sample` (users, seed), on that many of the users, drawn reproducibly."""
    wanted = chosen(methods_for(plan, True), methods)  # a bad pattern stops before any work
    # A sample has a cache of its own: a user's merges pool the other users' adapters.
    work = RESULTS / "cache" / (f"{run_name(plan.quick, lamp)}-{plan.key()}" + sample_name(sample))
    work.mkdir(parents=True, exist_ok=True)
    # Caches of the converted base model, shared by every run; never the user's own data folder.
    os.environ["MYNA_HOME"] = str(RESULTS / "cache" / "home")
    started = time.perf_counter()
    space = Workspace(plan, work)
    tasks = [load(*lamp).task] if lamp else list(plan.tasks)
    results = {"plan": asdict(plan), "tasks": {}, "methods": methods}
    needs = {spec.model for spec in wanted.values()} - {None}
    # Merges pool the other users' own adapters; training on top of PriME needs the merge.
    need_merges = bool(needs - {"oppu", "oppu-memory"})
    for task in tasks:
        on_stage(f"{task}: dataset")
        dataset = dataset_for(task, plan, work, lamp, sample)
        users = dataset.users()
        stores = {u: space.store(task, u, dataset.of(u)) for u in users}
        models = {u: UserModels() for u in users}
        for user in users if needs else ():
            on_stage(f"{task}: OPPU adapter for {user}")
            models[user].oppu = space.train_oppu(task, user, stores[user])
        trained = [u for u in users if models[u].own]
        cold = {u: models[u].oppu.examples for u in users if models[u].oppu and not models[u].own}
        for number, user in enumerate(users if need_merges else ()):
            pool = space.pool(task, user, stores, {v: models[v].own for v in trained if v != user})
            if not pool or not space.examples(stores[user]).held_out:
                continue  # no community to merge, or nothing of this user's to score a merge on
            on_stage(f"{task}: merges for {user}")
            alphas = plan.alphas if number < plan.sweep_users else (0.0, plan.alpha)
            alphas = tuple(sorted(set(alphas) | {0.0, plan.alpha}))
            models[user].merges = space.merges(task, user, stores[user], pool, alphas)
            for term in plan.published_terms if plan.published else ():
                family = TERM_FAMILY[term]
                if not any(family_of(model) == family for model in needs):
                    continue
                on_stage(f"{task}: merges by PriME's published fitness, {term} privacy term, for {user}")
                few = space.pool(task, user, stores, pool, plan.published_pool)
                # At alpha 0 the term does not count: the published family's search is that one.
                searched = alphas if term == "mean" else tuple(a for a in alphas if a > 0)
                models[user].published[family] = space.merges(
                    task,
                    user,
                    stores[user],
                    few,
                    searched,
                    f"-{family}{plan.published_pool}",
                    False,
                    privacy=term,
                )
        if plan.oppu_variants:
            for user in trained:
                if "oppu-memory" in needs:
                    on_stage(f"{task}: OPPU trained with memory for {user}")
                    models[user].oppu_memory = space.train_oppu(task, user, stores[user], "oppu-memory", memory=True)
                merged = models[user].merged().get(f"prime-a{plan.alpha:g}")
                if merged and "prime-oppu" in needs:
                    on_stage(f"{task}: OPPU on top of PriME for {user}")
                    models[user].prime_oppu = space.train_oppu(
                        task, user, stores[user], "prime-oppu", start=merged.path
                    )
        predictions: dict[str, dict[str, Answers]] = {}
        table = {
            name: spec
            for name, spec in methods_for(plan, any(models[u].merges for u in users)).items()
            if name in wanted
        }
        for user in users:
            for method, spec in table.items():
                on_stage(f"{task}: {method} for {user}")
                record = models[user].record(spec.model)
                served = as_served(spec, record is not None)
                # A cold start is served what a row of the table already computes (the shipped
                # memory answer): the same cached answers, not a second generation of them.
                name = method if served == spec else next((m for m, s in table.items() if s == served), "cold start")
                predictions.setdefault(method, {})[user] = space.predict(
                    task,
                    user,
                    dataset.of(user),
                    name,
                    stores[user],
                    record.path if record else None,
                    served.rag,
                    served.layout,
                )
        by_amount, attacks = {}, None
        if not methods:
            on_stage(f"{task}: amount of user data")
            by_amount = amounts.run(space, task, dataset, plan)
            on_stage(f"{task}: privacy")
            attacks = privacy.run(space, task, dataset, stores, models, plan)
        elif any(models[u].families() for u in users):
            on_stage(f"{task}: membership inference against the merges")
            attacks = privacy.run(space, task, dataset, stores, models, plan, with_canaries=False)
        on_stage(f"{task}: diagnostics")
        diagnostics = diagnose.run(space, task, dataset, stores, predictions, models, table, partial=bool(methods))
        costs = {method: [models[u].record(spec.model) for u in users] for method, spec in table.items()}
        results["tasks"][task] = summary.summarize(task, dataset, predictions, costs, by_amount, attacks, plan)
        results["tasks"][task]["diagnostics"] = diagnostics
        results["tasks"][task]["cold_start"] = cold
        results["tasks"][task]["default_method"] = default_method(table)
        results["tasks"][task]["nightly_method"] = nightly_method(table)
    results["wall_seconds"] = time.perf_counter() - started
    results["stage_seconds"], stage_peak = stage_totals(work)
    results["peak_mib"] = max(peak_mib(), stage_peak)
    return results


def sample_name(sample: tuple[int, int] | None) -> str:
    return f"-users{sample[0]}-seed{sample[1]}" if sample else ""


def main(
    quick: bool,
    tasks: list[str] | None,
    lamp: tuple[Path, Path] | None,
    methods: str | None = None,
    sample: tuple[int, int] | None = None,
) -> None:
    if sample and sample[0] < 1:
        raise SystemExit(f"--users {sample[0]}: a run needs at least one user; give a positive number.")
    plan = QUICK if quick else Plan()
    if tasks:
        plan = replace(plan, tasks=tuple(tasks))
    results = run(
        plan,
        lamp,
        on_stage=lambda stage: print(f"[{time.strftime('%H:%M:%S')}] {stage}", flush=True),
        methods=methods,
        sample=sample,
    )
    out = RESULTS / ("lamp-quick" if quick else "lamp") if lamp is None else RESULTS / run_name(plan.quick, lamp)
    out = out.with_name(out.name + sample_name(sample))
    if methods:  # some rows only: never in place of the whole report
        out = out / "some-methods" / "+".join(results["tasks"])
    report.write(results, out)
    print((out / "results.md").read_text())
