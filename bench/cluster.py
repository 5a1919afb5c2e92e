"""Scaling out: the same LaMP benchmark run in one process and on a Ray cluster, side by side.

    python -m bench cluster [--users 6] [--ray local|ADDRESS]

Both runs answer the same LaMP_7 users (the quick plan's sizes) with the rows that are work per
user (each user's own adapter, a merge of the others' adapters and the membership attack on
it, memory), each from an empty
cache of its own: in this machine's one process, then with `--ray` (by default a Ray cluster
started on this machine for the run, as many workers as it has cores). The report gives both
wall times, whether the answers are the same, what one user's units cost, and what 1,000
users would cost from those per-unit times.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import RESULTS, save, table

ROWS = r"^(OPPU|OPPU \+ RAG hybrid k=4|RAG hybrid k=4|PriME \(alpha 0\.5\))$"


def run(users: int, ray_address: str) -> dict:
    from bench.datasets import BUILDERS
    from bench.lamp.cache import run_name
    from bench.lamp.plan import QUICK

    folder = RESULTS / "cache" / f"cluster-{users}"
    built = BUILDERS["LaMP_7"](
        users=users,
        questions=QUICK.questions,
        profile=QUICK.profile["LaMP_7"],
        seed=QUICK.seed,
        words=QUICK.article_words,
    )
    questions, outputs = built.write(folder)
    runs = {}
    for name, extra in (("in one process", []), ("on Ray", ["--ray", ray_address])):
        # The same data under a name of its own: each run starts from an empty cache.
        stem = "here" if not extra else "ray"
        pair = (folder / f"{stem}_questions.json", folder / f"{stem}_outputs.json")
        shutil.copyfile(questions, pair[0])
        shutil.copyfile(outputs, pair[1])
        cache = RESULTS / "cache" / f"{run_name(True, pair)}-{QUICK.key()}"
        shutil.rmtree(cache, ignore_errors=True)
        command = [sys.executable, "-m", "bench", "lamp", "--quick", "--lamp", *map(str, pair), "--methods", ROWS]
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(command[1:] + extra)}", flush=True)
        started = time.perf_counter()
        done = subprocess.run([*command, *extra], capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"The run {name} failed:\n{done.stderr[-3000:]}")
        report = RESULTS / run_name(True, pair) / "some-methods" / "LaMP_7" / "results.json"
        runs[name] = {
            "wall_seconds": wall,
            "units": unit_seconds(cache / "LaMP_7"),
            "results": json.loads(report.read_text()),
        }
    here, there = (runs[k]["results"]["tasks"]["LaMP_7"]["methods"] for k in runs)
    same = all(here[m]["answers"] == there[m]["answers"] for m in here) and set(here) == set(there)
    return {"users": users, "rows": ROWS, "ray_address": ray_address, "same_answers": same, "runs": runs}


def unit_seconds(task_folder: Path) -> dict[str, dict[str, float]]:
    """Each user's stage seconds, by kind of unit, from the records the stages saved."""
    kinds = {
        "oppu": "own adapter",
        "merges": "merges",
        "predictions": "answers",
        "privacy": "membership inference",
        "attack-base": "membership inference",
    }
    found: dict[str, dict[str, float]] = {}
    for record in task_folder.glob("*/**/*.json"):
        user = record.relative_to(task_folder).parts[0]
        kind = next(
            (label for prefix, label in kinds.items() if record.name.startswith(prefix) or prefix in record.parts), None
        )
        data = json.loads(record.read_text())
        if kind and isinstance(data, dict) and "seconds" in data:
            found.setdefault(user, {}).setdefault(kind, 0.0)
            found[user][kind] += data["seconds"]
    return found


def per_user(units: dict[str, dict[str, float]]) -> tuple[float, dict[str, float]]:
    """The mean seconds of one user's units, in all and by kind."""
    count = max(1, len(units))
    kinds = sorted({kind for user in units.values() for kind in user})
    by_kind = {kind: sum(user.get(kind, 0.0) for user in units.values()) / count for kind in kinds}
    return sum(by_kind.values()), by_kind


def summarize(result: dict, workers: int) -> str:
    here, there = result["runs"]["in one process"], result["runs"]["on Ray"]
    mean, by_kind = per_user(there["units"])
    alone, _ = per_user(here["units"])
    rows = [
        ("wall time, in one process", f"{here['wall_seconds']:.0f} s", "baseline"),
        (
            "wall time, on Ray",
            f"{there['wall_seconds']:.0f} s",
            f"{there['wall_seconds'] / here['wall_seconds']:.2f}x the baseline, {workers} workers",
        ),
        ("same answers on Ray as in one process", "yes" if result["same_answers"] else "NO", "every row, every user"),
        (
            "one user's units on Ray (1 CPU each)",
            f"{mean:.0f} s",
            ", ".join(f"{k} {v:.0f} s" for k, v in by_kind.items()) + f"; {alone:.0f} s in one process on all cores",
        ),
        (
            "1,000 users, projected",
            f"{mean * 1000 / workers / 3600:.1f} h on {workers} CPUs",
            f"{mean * 1000 / 64 / 3600:.2f} h on 64 CPUs; {mean * 1000 / 3600:.1f} CPU-hours",
        ),
    ]
    return (
        f"{len(there['units'])} LaMP_7 users (quick plan), rows `{result['rows']}`, Ray at `{result['ray_address']}`\n\n"
        + table(rows)
    )


def main(users: int, ray_address: str) -> None:
    import os

    result = run(users, ray_address)
    workers = os.cpu_count() or 1
    text = summarize(result, workers)
    for run_ in result["runs"].values():
        run_["results"] = {"wall_seconds": run_["results"]["wall_seconds"], "peak_mib": run_["results"]["peak_mib"]}
    save("cluster", {**result, "workers": workers, "summary": text})
    print(text)
