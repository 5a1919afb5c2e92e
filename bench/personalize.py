"""Personalization: a full `myna personalize` (8 community adapters, budget 40, 50 held-out
examples) with each objective side by side in one run (the shipped one: held-out likelihood
minus alpha x similarity to the closest sharer; PriME's published one: the task metric of
generated answers, raced, minus alpha x the mean similarity to the sharers; that fitness with
the excess term; and with one weight per adapter and layer), and candidate evaluations per
minute for each evaluation backend.

    python -m bench personalize [--budget 40] [--adapters 8] [--held-out 50] [--objectives shipped,excess]

The community adapters are built from 8 news accounts' tweets (`myna hub build`, cached in
bench/results/cache between runs); the user is a 9th account whose older tweets are its
history (imported as a LaMP_7 profile).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import BIN, RESULTS, run_measured, save, table

USER = "reuters_health"
SHARERS = [
    "bbchealth",
    "cbchealth",
    "cnnhealth",
    "foxnewshealth",
    "latimeshealth",
    "nprhealth",
    "nytimeshealth",
    "wsjhealth",
]


def ensure_hub(env: dict, count: int) -> Path:
    folder = RESULTS / "cache" / f"hub-tweets-{count}"
    if not (folder / "index.json").exists() or len(json.loads((folder / "index.json").read_text())["adapters"]) < count:
        run_measured(
            [
                str(BIN / "myna"),
                "hub",
                "build",
                str(folder),
                "--corpus",
                "tweets",
                "--authors",
                ",".join(SHARERS[:count]),
                "--per-author",
                "64",
            ],
            env=env,
            timeout=3600,
        )
    return folder


def user_home(hub: Path, count: int, held_out: int) -> dict:
    from merger.data import corpora

    home = Path(tempfile.mkdtemp(prefix="myna-bench-personalize-"))
    env = dict(os.environ, MYNA_HOME=str(home))
    history = corpora.authors("tweets")[USER][: held_out * 5]  # 20 % of the examples are held out
    profile = home / "history.json"
    profile.write_text(
        json.dumps([{"id": "u", "input": "", "profile": [{"id": str(t.tweet_id), "text": t.text} for t in history]}])
    )
    for command in (["import", str(profile)], ["adapters", "pull", *SHARERS[:count], "--hub", str(hub)]):
        run_measured([str(BIN / "myna"), *command], env=env, timeout=600)
    return env


def evaluations_per_minute(env: dict, held_out: int, trials: int = 3) -> dict:
    """Time to evaluate one candidate (apply its weights, score the held-out set, and with the
    privacy penalty also generate the probes) for each backend."""
    os.environ["MYNA_HOME"] = env["MYNA_HOME"]
    from assistant import adapters
    from assistant.catalogue import resolve
    from assistant.engine import Engine
    from assistant.settings import Settings
    from assistant.store import open_database
    from merger.data import examples
    from merger.formats import gguf_lora
    from merger.formats.base_model import architecture
    from merger.search import scoring
    from merger.training import torch_model

    db = open_database()
    spec = resolve(Settings().model)
    arch = architecture(spec)
    community = [a for a in adapters.listing(db) if a.kind == "community"]
    loras = [gguf_lora.read(a.gguf, arch) for a in community]
    engine = Engine(spec, context_size=2048)
    base = torch_model.load(spec)
    scoring_set = scoring.prepare(engine, examples.from_store(db).held_out[:held_out], Settings().system_prompt)
    rng = np.random.default_rng(0)
    candidates = [rng.uniform(-1, 1, len(loras)) for _ in range(trials)]
    folder = Path(tempfile.mkdtemp())
    backends = {
        "torch": lambda merge: scoring.TorchBackend(base, loras, merge=merge),
        "file": lambda merge: scoring.LlamaFileBackend(engine, loras, arch, folder, merge=merge),
        "scales": lambda merge: scoring.LlamaScalesBackend(engine, [a.gguf for a in community]),
    }
    results = {"tokens_scored_per_candidate": scoring_set.tokens}
    for name, make in backends.items():
        backend = make("updates" if name == "scales" else "elementwise")
        for with_privacy in (False, True):
            start = time.perf_counter()
            for weights in candidates:
                backend.apply(weights)
                backend.mean_logprob(scoring_set)
                if with_privacy:
                    backend.generate(scoring_set.probes, scoring_set.probe_tokens)
            seconds = (time.perf_counter() - start) / trials
            results[f"{name}{'_privacy' if with_privacy else ''}_per_min"] = 60 / seconds
        if name == "torch":  # a complete candidate of task-metric fitness: answers to every held-out input
            start = time.perf_counter()
            for weights in candidates:
                backend.apply(weights)
                scoring.answers(backend, scoring_set)
            results["torch_task_per_min"] = 60 / ((time.perf_counter() - start) / trials)
        backend.close()
    return results


# The objectives compared, as `myna personalize` options: what ships, PriME's published code,
# its fitness with the excess or the likelihood privacy term, and its one weight per adapter and
# layer.
PUBLISHED = ["--metric", "task", "--privacy", "mean"]
OBJECTIVES = {
    "shipped": [],
    "published": PUBLISHED,
    "excess": ["--metric", "task", "--privacy", "excess"],
    "likelihood": ["--metric", "task", "--privacy", "likelihood"],
    "published per layer": [*PUBLISHED, "--per-layer"],
}


def personalize_once(hub: Path, count: int, budget: int, held_out: int, options: list[str]) -> dict:
    """One `myna personalize` in a fresh user folder (the same history and hub every time)."""
    from assistant.store import open_database
    from merger.nightly import runs

    user = user_home(hub, count, held_out)
    measured = run_measured(
        [str(BIN / "myna"), "personalize", "--budget", str(budget), "--adapters", str(count), *options],
        env=user,
        timeout=3600,
    )
    record = runs.latest(open_database(Path(user["MYNA_HOME"]) / "myna.db"))
    return {
        "options": options,
        "wall_s": measured["wall_s"],
        "peak_mib": measured["peak_mib"],
        "status": record.status,
        "fitness_before": record.fitness_before,
        "fitness_after": record.fitness_after,
        "similarity_before": record.similarity_before,
        "similarity_after": record.similarity_after,
        "weights": dict(zip(record.adapters, record.weights)),
        "output": measured["stdout"].strip().splitlines()[-3:],
        "home": user["MYNA_HOME"],
    }


def run(budget: int, count: int, held_out: int, objectives: list[str]) -> dict:
    os.environ.setdefault("MYNA_HOME", tempfile.mkdtemp(prefix="myna-bench-hub-"))
    env = dict(os.environ)
    start = time.perf_counter()
    hub = ensure_hub(env, count)
    hub_seconds = time.perf_counter() - start
    figures = {
        "budget": budget,
        "adapters": count,
        "held_out": held_out,
        "hub_build_or_cache_s": hub_seconds,
        "objectives": {name: personalize_once(hub, count, budget, held_out, OBJECTIVES[name]) for name in objectives},
    }
    first = figures["objectives"][objectives[0]]["home"]  # the same history and adapters in each
    figures.update(evaluations_per_minute({"MYNA_HOME": first}, held_out))
    return figures


def _figure(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(f: dict) -> str:
    rows = []
    for name, run in f["objectives"].items():
        what = f"`myna personalize {' '.join(run['options'])}`".replace(" `", "`")
        rows += [
            (
                f"{name} objective, {what}: {f['adapters']} adapters, budget {f['budget']}, {f['held_out']} held out",
                f"{run['wall_s'] / 60:.1f} min, peak {run['peak_mib'] / 1024:.2f} GiB",
                "target < 10 min, < 4 GiB",
            ),
            (
                f"{name} objective: outcome",
                run["status"],
                f"fitness {_figure(run['fitness_before'], 3)} -> {_figure(run['fitness_after'], 3)}; similarity "
                f"to the sharers {_figure(run['similarity_before'], 2)} -> {_figure(run['similarity_after'], 2)}",
            ),
        ]
    for name, label in (
        ("torch", "torch, merged into PEFT, bf16 batches"),
        ("file", "llama.cpp, one merged GGUF per candidate"),
        ("scales", "llama.cpp, 8 adapters at once with scales"),
    ):
        rows.append(
            (
                f"candidates per minute: {label}",
                f"{f[name + '_per_min']:.1f}",
                f"{f[name + '_privacy_per_min']:.1f} with the privacy probes",
            )
        )
    rows.append(
        (
            "candidates per minute: torch, task metric (answers to every held-out input)",
            f"{f['torch_task_per_min']:.1f}",
            "a raced candidate stops after 16 of them when it is behind",
        )
    )
    return table(rows)


def main(budget: int, count: int, held_out: int, objectives: list[str] | None = None) -> None:
    unknown = set(objectives or []) - set(OBJECTIVES)
    if unknown:
        raise SystemExit(f"Unknown objective {', '.join(sorted(unknown))}; choose from {', '.join(OBJECTIVES)}.")
    figures = run(budget, count, held_out, objectives or list(OBJECTIVES))
    print(report(figures))
    print(f"saved to {save('personalize', figures)}")
