"""A whole benchmark run: for each task, the users' stores and adapters, their merges, every
method's answers, then the measurements beyond the table, the summary and the report.

    python -m bench lamp [--quick] [--tasks LaMP_4,LaMP_7] [--lamp QUESTIONS OUTPUTS]
                         [--users N --seed S] [--methods REGEX] [--ray ADDRESS]
                         [--questions N] [--built-users N] [--histories SIZES]
                         [--nightly-variant OPTIONS ...] [--rescore]

Stages cache their results under bench/results/cache/, so a run that crashes resumes where it
stopped. Results go to bench/results/lamp[-quick]/: results.json, results.md, plots/*.png.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

from bench.common import RESULTS
from bench.datasets import load
from bench.lamp import amounts, diagnose, nightly, privacy, report, stages, summary
from bench.lamp.cache import code_digest, peak_mib, run_name, stage_totals
from bench.lamp.models import merge_rows
from bench.lamp.plan import (
    NIGHTLY,
    QUICK,
    Method,
    Plan,
    default_method,
    is_nightly,
    methods_for,
    nightly_method,
    nightly_model,
    steps,
)
from bench.lamp.records import Answers
from bench.lamp.stages import TaskRun, Unit, dataset_for
from bench.lamp.workspace import Workspace

# What a report keeps of each user's nightly run (bench.lamp.records.Nightly).
NIGHTLY_KEPT = ("status", "message", "examples", "fitness_before", "fitness_after", "seconds", "adapters", "weights")


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
    ray_address: str | None = None,
) -> dict:
    """Every stage of the plan; with `methods`, only the rows that match and the models they
    need (no privacy or amount-of-data stages, whose figures are about the whole table); with
    `sample` (users, seed), on that many of the users, drawn reproducibly; with `ray_address`,
    each user's adapters, merges and answers as tasks on that Ray cluster (bench.lamp.stages)."""
    wanted = chosen(methods_for(plan, True), methods)  # a bad pattern stops before any work
    # A sample has a cache of its own: a user's merges pool the other users' adapters.
    code = code_digest()
    work = RESULTS / "cache" / (f"{run_name(plan.quick, lamp)}-{plan.key()}-{code}" + sample_name(sample))
    work.mkdir(parents=True, exist_ok=True)
    # Caches of the converted base model, shared by every run; never the user's own data folder.
    os.environ["MYNA_HOME"] = str(RESULTS / "cache" / "home")
    started = time.perf_counter()
    space = Workspace(plan, work)
    tasks = [load(*lamp).task] if lamp else list(plan.tasks)
    results = {"plan": asdict(plan), "code": code, "tasks": {}, "methods": methods}
    for task in tasks:
        on_stage(f"{task}: dataset")
        dataset = dataset_for(task, plan, work, lamp, sample)
        job = TaskRun(space, task, dataset, wanted)

        def unit(stage: str, user: str, task=task, job=job) -> Unit:
            pair = tuple(str(Path(p).resolve()) for p in lamp) if lamp else None
            return Unit(plan, str(work), pair, sample, task, tuple(wanted), tuple(job.table), stage, user)

        for stage in ("oppu", "merges", "variants", "nightly"):
            stages.each(job, stage, on_stage, ray_address, unit)
        users, stores, models = job.users, job.stores, job.models
        cold = {u: models[u].oppu.examples for u in users if models[u].oppu and not models[u].own}
        job.table = {
            name: spec
            for name, spec in methods_for(plan, any(models[u].merges for u in users)).items()
            if name in wanted
        }
        answers = stages.each(job, "answers", on_stage, ray_address, unit)
        table = job.table
        predictions: dict[str, dict[str, Answers]] = {
            method: {user: answers[user][method] for user in users} for method in table
        }
        # The attack is about the whole table, or (some rows only) about whatever merges were made.
        job.attack = not methods or any(models[u].families() for u in users)
        stages.each(job, "attacks", on_stage, ray_address, unit)
        by_amount, attacks = {}, None
        if not methods:
            on_stage(f"{task}: amount of user data")
            by_amount = amounts.run(space, task, dataset, plan)
            on_stage(f"{task}: privacy")
            attacks = privacy.run(space, task, dataset, stores, models, plan)
        elif job.attack:
            attacks = privacy.run(space, task, dataset, stores, models, plan, with_canaries=False)
        on_stage(f"{task}: diagnostics")
        diagnostics = diagnose.run(space, task, dataset, stores, predictions, models, table, partial=bool(methods))
        costs = {method: [models[u].record(spec.model) for u in users] for method, spec in table.items()}
        results["tasks"][task] = summary.summarize(
            task, dataset, predictions, costs, by_amount, attacks, plan, merge_rows(table), steps(table, plan.alpha)
        )
        results["tasks"][task]["diagnostics"] = diagnostics
        results["tasks"][task]["cold_start"] = cold
        results["tasks"][task]["default_method"] = default_method(table)
        results["tasks"][task]["nightly_method"] = nightly_method(table)
        # What each user's nightly run did: as shipped, and with each variant's options (by row).
        runs = {NIGHTLY: {u: models[u].nightly for u in users}}
        for name, spec in table.items():
            if is_nightly(spec.model) and spec.model != NIGHTLY:
                runs[name] = {u: models[u].nightly_variants.get(spec.model) for u in users}
        kept = {
            key: {u: {k: v for k, v in asdict(r).items() if k in NIGHTLY_KEPT} for u, r in by_user.items() if r}
            for key, by_user in runs.items()
        }
        results["tasks"][task]["nightly"] = kept.pop(NIGHTLY)
        results["tasks"][task]["nightly_variants"] = {row: found for row, found in kept.items() if found}
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
    ray_address: str | None = None,
    questions: int | None = None,
    again: bool = False,
    built_users: int | None = None,
    histories: tuple[int, ...] = (),
    nightly_variants: tuple[str, ...] = (),
    joined: Path | None = None,
) -> None:
    if sample and sample[0] < 1:
        raise SystemExit(f"--users {sample[0]}: a run needs at least one user; give a positive number.")
    if questions is not None and questions < 1:
        raise SystemExit(f"--questions {questions}: a user needs at least one question; give a positive number.")
    if questions is not None and lamp:
        raise SystemExit("--questions is for the built-in datasets: a LaMP pair's questions are those in its file.")
    if built_users is not None and built_users < 2:
        raise SystemExit(f"--built-users {built_users}: each user's community is the other users; give 2 or more.")
    if built_users is not None and lamp:
        raise SystemExit("--built-users is for the built-in datasets: a LaMP pair's users are those in its file.")
    plan = QUICK if quick else Plan()
    if built_users is not None:
        plan = replace(plan, users=built_users)
    if tasks:
        plan = replace(plan, tasks=tuple(tasks))
    if questions is not None:
        plan = replace(plan, questions=questions)
    if histories:
        if min(histories) < 1:
            raise SystemExit(f"--histories {','.join(map(str, histories))}: each size must be 1 or more items.")
        plan = replace(plan, histories=tuple(histories))
    if nightly_variants:
        for options in nightly_variants:
            nightly.config(nightly_model(options))  # a bad option is refused before any work
        plan = replace(plan, nightly_variants=tuple(nightly_variants))
    out = RESULTS / ("lamp-quick" if quick else "lamp") if lamp is None else RESULTS / run_name(plan.quick, lamp)
    # Another question count or user count is another benchmark: never in place of the default's report.
    out = out.with_name(
        out.name
        + sample_name(sample)
        + (f"-built{built_users}" if built_users is not None else "")
        + (f"-questions{questions}" if questions is not None else "")
        + (f"-histories{'-'.join(map(str, histories))}" if histories else "")
        + "".join(f"-{nightly.stem(nightly_model(options))}" for options in nightly_variants)
    )
    if methods:  # some rows only: never in place of the whole report
        out = out / "some-methods" / "+".join([load(*lamp).task] if lamp else plan.tasks)
    if joined and not again:
        raise SystemExit("--join adds another run's rows to this run's report: give it with --rescore.")
    if again:
        results = rescore(out, plan, lamp, methods, sample, joined)
    else:
        results = run(
            plan,
            lamp,
            on_stage=lambda stage: print(f"[{time.strftime('%H:%M:%S')}] {stage}", flush=True),
            methods=methods,
            sample=sample,
            ray_address=ray_address,
        )
    report.write(results, out)
    print((out / "results.md").read_text())


def rescore(
    out: Path,
    plan: Plan,
    lamp: tuple[Path, Path] | None,
    methods: str | None,
    sample: tuple[int, int] | None,
    joined: Path | None = None,
) -> dict:
    """The report in `out` with everything it takes from its stored answers computed again by
    this version (summary.answer_scores): a new comparison reaches a long run's results
    without redoing it when the stage cache is gone. Times, memory and privacy stay as they
    were measured."""
    path = out / "results.json"
    if not path.exists():
        raise SystemExit(
            f"{path} does not exist: --rescore scores a finished run again; run it first with the same options."
        )
    results = json.loads(path.read_text())
    # The nightly variants' rows may come from a joined run: which ones this run made does not
    # change how its own answers are scored.
    made, given = (
        {k: v for k, v in json.loads(json.dumps(settings)).items() if k != "nightly_variants"}
        for settings in (results.get("plan") or {}, asdict(plan))
    )
    defaults = json.loads(json.dumps(asdict(Plan())))
    # A setting newer than the results was at its default when they were made.
    if made != {k: v for k, v in given.items() if k in made or v != defaults[k]}:
        raise SystemExit(
            f"{path} was made with other settings than these options give; rescore it with the options that made it."
        )
    if joined:
        join(results, joined)
    table = chosen(methods_for(plan, True), methods)
    merges, pairs = merge_rows(table), steps(table, plan.alpha)
    with tempfile.TemporaryDirectory() as work:
        for task, found in results["tasks"].items():
            rows = found["methods"]
            if any("answers" not in row for row in rows.values()):
                raise SystemExit(
                    f"{path} keeps no answers for {task} (made before they were stored); run it again instead."
                )
            dataset = dataset_for(task, plan, Path(work), lamp, sample)
            said = {method: row["answers"] for method, row in rows.items()}
            for method, scored in summary.answer_scores(task, dataset, said, plan.seed, merges, pairs).items():
                rows[method].update(scored)
            found["privacy_goal"] = summary.privacy_goal(task, rows, found.get("privacy"), merges)
    return results


# What a joined row brings from its run besides its scores (the per-user nightly records).
JOINED_KEYS = ("nightly", "nightly_method", "nightly_variants")


def join(results: dict, path: Path) -> None:
    """The rows of the run saved at `path` (another code version, or other rows of the same
    questions) added to `results`, so their differences are computed question by question. Only
    if every row both runs answered has the same answer to every question in both: then the two
    versions answer alike, and a row of one can stand beside a row of the other."""
    if not path.exists():
        raise SystemExit(f"--join {path}: no such file; give the results.json of a finished run.")
    other = json.loads(path.read_text())
    for task, found in results["tasks"].items():
        theirs = (other.get("tasks") or {}).get(task)
        if theirs is None:
            raise SystemExit(f"--join {path}: that run has no {task}; join runs of the same task.")
        rows, added = found["methods"], theirs["methods"]
        shared = sorted(set(rows) & set(added))
        differ = [m for m in shared if rows[m].get("answers") != added[m].get("answers")]
        if not shared or differ or not all("answers" in row for row in added.values()):
            raise SystemExit(
                f"--join {path}: "
                + (f"its rows {', '.join(differ)} answered otherwise" if differ else "no row answered alike in both")
                + "; only runs whose common rows answered every question alike can be joined."
            )
        new = [m for m in added if m not in rows]
        rows.update({m: added[m] for m in new})
        for key in JOINED_KEYS:
            if theirs.get(key) and not found.get(key):
                found[key] = theirs[key]
        if new:  # (joined again: the report already says where its rows came from)
            found.setdefault("joined", []).append(
                {"from": str(path), "code": other.get("code"), "rows": new, "alike": shared}
            )
