"""Personalization: a full `myna personalize` (8 community adapters, the shipped search budget,
50 held-out examples) with each objective side by side in one run (the shipped one: held-out likelihood
minus alpha x similarity to the closest sharer; PriME's published one: the task metric of
generated answers, raced, minus alpha x the mean similarity to the sharers; that fitness with
the excess term; and with one weight per adapter and layer), and candidate evaluations per
minute for each evaluation backend.

    python -m bench personalize [--budget N] [--adapters 8] [--held-out 50] [--objectives shipped,excess]
        [--users reuters_health,NBChealth] [--merge-only] [--no-rates] [--save-as personalize] [--next-nights]

The community adapters are built from 8 news accounts' tweets (`myna hub build`, cached in
bench/results/cache between runs); the user is another account whose older tweets are its
history (imported as a LaMP_7 profile), or each of several. After each run the adapter that then
answers the user (the one published, else the one before) answers the held-out inputs in
llama.cpp, and objectives are compared on those answers, paired (the same inputs resampled
together): which pool size (PriME's n_sim, 3 against 8) and which weights (per adapter or per
layer) to ship. `--next-nights` then runs the nights after the first in the same folder: one
with nothing new (skipped), one after a few more history items (answers kept from the first
night are reused), each as a fraction of the first night's wall time.
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
# Other accounts of the corpus that can be a user beside the 8 sharers (enough tweets for 250
# examples each).
USERS = (USER, "NBChealth", "KaiserHealthNews", "everydayhealth", "msnhealthnews")
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


def user_home(hub: Path, count: int, held_out: int, user: str, work: Path) -> dict:
    home = Path(tempfile.mkdtemp(prefix=f"{user}-", dir=work))
    env = dict(os.environ, MYNA_HOME=str(home))
    profile = history_file(home / "history.json", user, 0, held_out * 5)  # 20 % of the examples are held out
    for command in (["import", str(profile)], ["adapters", "pull", *SHARERS[:count], "--hub", str(hub)]):
        run_measured([str(BIN / "myna"), *command], env=env, timeout=600)
    return env


def history_file(path: Path, user: str, start: int, end: int) -> Path:
    """The user's tweets start..end (oldest first) as a LaMP_7 profile to import."""
    from merger.data import corpora

    tweets = corpora.authors("tweets")[user][start:end]
    profile = [{"id": str(t.tweet_id), "text": t.text} for t in tweets]
    path.write_text(json.dumps([{"id": "u", "input": "", "profile": profile}]))
    return path


NEW_ITEMS = 5  # what a day adds to the history between two nights (a few ratings or notes)


def next_nights(env: dict, command: list[str], user: str, held_out: int) -> dict:
    """The nights after the first in the same folder: one on which nothing changed, then one
    after NEW_ITEMS more of the user's tweets were imported (the user's usual night)."""

    def later() -> dict:
        measured, record = _night(env, command)
        return {
            "wall_s": measured["wall_s"],
            "peak_mib": measured["peak_mib"],
            "status": record.status,
            "phase_seconds": record.phase_seconds,
            "message": record.message,
        }

    home = Path(env["MYNA_HOME"])
    nights = {"nothing new": later()}
    more = history_file(home / "more-history.json", user, held_out * 5, held_out * 5 + NEW_ITEMS)
    run_measured([str(BIN / "myna"), "import", str(more)], env=env, timeout=600)
    nights[f"{NEW_ITEMS} new history items"] = later()
    return nights


def _night(env: dict, command: list[str]):
    """Run `command` (a `myna personalize`) measured; its measurement and the run it recorded."""
    from assistant.store import open_database
    from merger.nightly import runs

    measured = run_measured(command, env=env, timeout=3600)
    return measured, runs.latest(open_database(Path(env["MYNA_HOME"]) / "myna.db"))


def evaluations_per_minute(env: dict, held_out: int, work: Path, trials: int = 3) -> dict:
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
    folder = Path(tempfile.mkdtemp(prefix="merges-", dir=work))
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
# its fitness with the excess or the likelihood privacy term, its one weight per adapter and
# layer, and its n_sim = 3 sharers (the others merge the --adapters most similar).
PUBLISHED = ["--metric", "task", "--privacy", "mean"]
OBJECTIVES = {
    "shipped": [],
    "published": PUBLISHED,
    "excess": ["--metric", "task", "--privacy", "excess"],
    "likelihood": ["--metric", "task", "--privacy", "likelihood"],
    "published per layer": [*PUBLISHED, "--per-layer"],
    "published 3 sharers": [*PUBLISHED, "--adapters", "3"],
    # The shipped objective with the search budget it had until 7 December (PersonalizeConfig.budget).
    "previous default": ["--budget", "40"],
    # The weight-space penalty (LoraHub's L1 at its 0.05) in place of the closest sharer's.
    "weights": ["--privacy", "weights", "--alpha", "0.05"],
}


def _searched(run: dict, figures: dict) -> str:
    """What sized a run's search: as its record says it (older results: from the options)."""
    if run.get("search"):
        return run["search"]
    options = run["options"]
    pool = int(options[options.index("--adapters") + 1]) if "--adapters" in options else figures["adapters"]
    return f"{pool} adapters, budget {figures['budget']}"


def personalize_once(
    hub: Path,
    count: int,
    budget: int | None,
    held_out: int,
    options: list[str],
    user: str,
    merge_only: bool,
    nights: bool,
    work: Path,
) -> dict:
    """One `myna personalize` in a fresh user folder in `work` (the same history and hub every
    time), and what the adapter serving the user afterwards scores on each held-out input; with
    `nights`, the next nights in the same folder too."""

    env = user_home(hub, count, held_out, user, work)
    command = [
        str(BIN / "myna"),
        "personalize",
        *([] if budget is None or "--budget" in options else ["--budget", str(budget)]),
        *([] if "--adapters" in options else ["--adapters", str(count)]),
        *options,
        *(["--merge-only"] if merge_only else []),
    ]
    measured, record = _night(env, command)
    home = Path(env["MYNA_HOME"])
    scores = served_scores(home, held_out)  # what the first night left, before the next ones
    return {
        "user": user,
        "options": options,
        "wall_s": measured["wall_s"],
        "peak_mib": measured["peak_mib"],
        "status": record.status,
        "fitness_before": record.fitness_before,
        "fitness_after": record.fitness_after,
        "similarity_before": record.similarity_before,
        "similarity_after": record.similarity_after,
        "weights": dict(zip(record.adapters, record.weights)),
        "phase_seconds": record.phase_seconds,
        "search": record.search(),  # its budget and pool, as `myna personalize --last` says them
        "held_out_scores": scores,
        "output": measured["stdout"].strip().splitlines()[-3:],
        "home": str(home),
        **({"next_nights": next_nights(env, command, user, held_out)} if nights else {}),
    }


def served_scores(home: Path, held_out: int) -> list[float]:
    """ROUGE-1 + ROUGE-L of each held-out answer of the adapter active in `home` (none: the bare
    model), in llama.cpp: the inputs and prompts of the run's own check before publishing."""
    from assistant import adapters
    from assistant.catalogue import resolve
    from assistant.engine import AdapterUse, Engine
    from assistant.settings import Settings
    from assistant.store import open_database
    from merger.data import examples, metrics
    from merger.search import scoring

    db = open_database(home / "myna.db")
    settings, active = Settings(), adapters.active(db)
    engine = Engine(resolve(settings.model), context_size=2048)
    engine.set_adapters([AdapterUse(active.gguf, 1.0, active.name)] if active else [])
    scoring_set = scoring.prepare(engine, examples.from_store(db).held_out[:held_out], settings.system_prompt)
    said = scoring.answers(scoring.LlamaBackend(engine), scoring_set)
    golds = [e.output for e in scoring_set.examples]
    return [metrics.fitness("rouge", [p], [g]) for p, g in zip(said, golds)]


def paired_difference(runs: list[tuple[list[float], list[float]]], seed: int = 0) -> dict:
    """Mean held-out score of B minus A over every user's inputs, with a 95 % bootstrap interval
    that resamples each user's inputs together for both (paired) and keeps every user's count."""
    from bench.lamp.scores import BOOTSTRAP

    rng = np.random.default_rng(seed)
    pairs = [(np.asarray(a), np.asarray(b)) for a, b in runs]
    mean = float(np.mean(np.concatenate([b - a for a, b in pairs])))
    draws = []
    for _ in range(BOOTSTRAP):
        picked = [rng.integers(0, len(a), len(a)) for a, _ in pairs]
        draws.append(np.mean(np.concatenate([(b - a)[i] for (a, b), i in zip(pairs, picked)])))
    return {"mean": mean, "low": float(np.percentile(draws, 2.5)), "high": float(np.percentile(draws, 97.5))}


def run(
    budget: int | None,
    count: int,
    held_out: int,
    objectives: list[str],
    users: list[str] = (USER,),
    merge_only: bool = False,
    rates: bool = True,
    nights: bool = False,
) -> dict:
    # Every folder the run makes is in `work`, removed when the run ends however it ends: each
    # user's folder holds a torch copy of the model and its adapters (over half a GB), and a
    # benchmark makes several.
    with tempfile.TemporaryDirectory(prefix="myna-bench-personalize-", ignore_cleanup_errors=True) as folder:
        work = Path(folder)
        os.environ.setdefault("MYNA_HOME", str(work / "hub-builder"))
        env = dict(os.environ)
        start = time.perf_counter()
        hub = ensure_hub(env, count)
        hub_seconds = time.perf_counter() - start
        by_user = {
            user: {
                name: personalize_once(hub, count, budget, held_out, OBJECTIVES[name], user, merge_only, nights, work)
                for name in objectives
            }
            for user in users
        }
        first = objectives[0]
        figures = {
            "budget": budget,
            "adapters": count,
            "held_out": held_out,
            "merge_only": merge_only,
            "hub_build_or_cache_s": hub_seconds,
            "users": by_user,
            # Each objective against the first, on what answers the users afterwards.
            "against_first": {
                name: paired_difference(
                    [(runs[first]["held_out_scores"], runs[name]["held_out_scores"]) for runs in by_user.values()]
                )
                for name in objectives[1:]
            },
        }
        if rates:
            home = by_user[users[0]][first]["home"]  # the same history and adapters in each
            figures.update(evaluations_per_minute({"MYNA_HOME": home}, held_out, work))
        for runs in by_user.values():
            for once in runs.values():
                del once["home"]  # removed with the run: no path to a folder that is gone
        return figures


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def _figure(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(f: dict) -> str:
    from merger.nightly.runs import where_the_time_went

    rows = []
    first = next(iter(next(iter(f["users"].values()))))
    for user, by_objective in f["users"].items():
        for name, run in by_objective.items():
            what = f"`myna personalize {' '.join(run['options'])}`".replace(" `", "`")
            scores = run["held_out_scores"]
            rows += [
                (
                    f"{user}, {name} objective, {what}: {_searched(run, f)}, "
                    f"{f['held_out']} held out{', merge only' if f.get('merge_only') else ''}",
                    f"{run['wall_s'] / 60:.1f} min, peak {run['peak_mib'] / 1024:.2f} GiB",
                    "target < 10 min, < 4 GiB",
                ),
                (
                    f"{user}, {name} objective: outcome",
                    run["status"],
                    f"fitness {_figure(run['fitness_before'], 3)} -> {_figure(run['fitness_after'], 3)}; similarity "
                    f"to the sharers {_figure(run['similarity_before'], 2)} -> {_figure(run['similarity_after'], 2)}",
                ),
                (
                    f"{user}, {name} objective: where the time went",
                    f"{run['wall_s'] / 60:.1f} min",
                    where_the_time_went(run.get("phase_seconds", {})),
                ),
                (
                    f"{user}, {name} objective: what answers afterwards, held out",
                    f"ROUGE-1 + ROUGE-L {np.mean(scores):.3f}",
                    f"{len(scores)} inputs, in llama.cpp",
                ),
            ]
            for night, later in run.get("next_nights", {}).items():
                rows.append(
                    (
                        f"{user}, {name} objective: the next night, {night}",
                        f"{_duration(later['wall_s'])} ({later['wall_s'] / run['wall_s']:.2f} of the first), "
                        f"{later['status']}",
                        where_the_time_went(later["phase_seconds"]) or later["message"],
                    )
                )
    for name, d in f["against_first"].items():
        rows.append(
            (
                f"{name} against {first}, held out, all users (paired)",
                f"{d['mean']:+.3f}",
                f"95 % interval {d['low']:+.3f} to {d['high']:+.3f}",
            )
        )
    if "torch_per_min" not in f:
        return table(rows)
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


def main(
    budget: int | None,
    count: int,
    held_out: int,
    objectives: list[str] | None = None,
    users: list[str] | None = None,
    merge_only: bool = False,
    rates: bool = True,
    save_as: str = "personalize",
    nights: bool = False,
) -> None:
    unknown = set(objectives or []) - set(OBJECTIVES)
    if unknown:
        raise SystemExit(f"Unknown objective {', '.join(sorted(unknown))}; choose from {', '.join(OBJECTIVES)}.")
    strangers = set(users or []) - set(USERS)
    if strangers:
        raise SystemExit(f"Unknown user {', '.join(sorted(strangers))}; choose from {', '.join(USERS)}.")
    figures = run(budget, count, held_out, objectives or list(OBJECTIVES), users or [USER], merge_only, rates, nights)
    print(report(figures))
    print(f"saved to {save(save_as, figures)}")
