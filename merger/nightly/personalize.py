"""`myna personalize`: the nightly pipeline (PriME, with OPPU as an option).

examples -> select community adapters -> evolutionary search of merge weights on the user's
held-out examples (minus a privacy penalty) -> optionally train the user's own adapter on top
of the merge -> check the winner in llama.cpp against the current adapter, by the task metric
of their answers to the held-out inputs -> publish it only if it is better. Nothing leaves the machine; nothing changes unless it is an improvement.

A history smaller than `config.min_examples` gets no adapter work at all (a cold start):
adapters trained on so little answered worse than memory alone in the benchmark (docs/benchmarks.md,
"gain versus amount of user data"), so the run says so and memory carries the user.

A night on which nothing changed (the same history, community adapters, options and active
adapter as where the last finished run ended) is skipped too: the run is seeded, so it would
search and train its way to the same adapter (measured: ten minutes to keep the same one).
"""

from __future__ import annotations

import json
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np
import sqlite_utils

from assistant import adapters, paths
from assistant.catalogue import resolve
from assistant.engine import AdapterUse, Engine
from assistant.errors import MynaError
from assistant.hashing import sha256_file
from assistant.settings import Settings
from merger.data import examples as example_builder
from merger.formats import gguf_lora
from merger.formats.base_model import architecture
from merger.nightly import runs, served
from merger.nightly.config import PersonalizeConfig
from merger.search import answer_cache, scoring, selection
from merger.search.evolution import evolve
from merger.training import background

Progress = Callable[[str, int, int], None]  # (phase, done, total)
MIN_HELD_OUT = 4


@dataclass
class Outcome:
    run_id: int
    status: str
    published: str | None
    adapters: list[str]
    weights: list[float]
    fitness_before: float | None  # None: no adapter work was done (a cold start)
    fitness_after: float | None
    similarity_before: float | None
    similarity_after: float | None
    seconds: float
    message: str
    phase_seconds: dict[str, float] = field(default_factory=dict)  # where the time went
    inputs: str | None = None  # where the run ended (runs.same_as_last)


def personalize(
    db: sqlite_utils.Database,
    settings: Settings,
    config: PersonalizeConfig = PersonalizeConfig(),
    *,
    model: str | None = None,
    on_progress: Progress | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    again: bool = False,
) -> Outcome:
    """One run for the user's `settings` (their model, unless `model` names another; its
    context and threads; their system prompt). Whatever happens, the run's temporary files
    are removed and its backends closed. `again`: run even if nothing changed since the
    last run."""
    config.check()
    with runs.exclusive():
        runs.mark_interrupted(db, holding_lock=True)
        run_id = runs.start(db, asdict(config))
        started = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix="myna-personalize-") as workdir, ExitStack() as resources:
                outcome = _run(
                    db,
                    settings,
                    model,
                    config,
                    run_id,
                    started,
                    on_progress,
                    should_stop,
                    again,
                    Path(workdir),
                    resources,
                )
        except KeyboardInterrupt:
            runs.finish(db, run_id, "cancelled", message="stopped by the user", seconds=time.perf_counter() - started)
            raise
        except Exception as exc:
            runs.finish(db, run_id, "failed", message=str(exc), seconds=time.perf_counter() - started)
            raise
        runs.finish(
            db,
            run_id,
            outcome.status,
            adapters=outcome.adapters,
            weights=outcome.weights,
            fitness_before=outcome.fitness_before,
            fitness_after=outcome.fitness_after,
            similarity_before=outcome.similarity_before,
            similarity_after=outcome.similarity_after,
            seconds=outcome.seconds,
            published=outcome.published,
            message=outcome.message,
            phase_seconds=outcome.phase_seconds,
            inputs=outcome.inputs,
        )
        return outcome


def _run(
    db, settings, model, config, run_id, started, on_progress, should_stop, again, workdir: Path, resources: ExitStack
) -> Outcome:
    """The run itself; every backend it opens is closed by `resources`, every file it writes
    is under `workdir` (removed afterwards) or published."""

    clock = runs.PhaseClock()

    def report(phase: str, done: int = 0, total: int = 0) -> None:
        clock.enter(phase)
        background.step_aside()  # between candidates: one thread while a chat replies
        runs.progress(db, run_id, phase, done, total)
        if on_progress:
            on_progress(phase, done, total)

    report("reading your history")
    spec, system = resolve(model or settings.model), settings.system_prompt
    arch = architecture(spec)
    example_set = example_builder.from_store(db)
    total = len(example_set.train) + len(example_set.held_out)

    def skip(message: str, inputs: str | None = None) -> Outcome:
        return Outcome(
            run_id=run_id,
            status="skipped",
            published=None,
            adapters=[],
            weights=[],
            fitness_before=None,
            fitness_after=None,
            similarity_before=None,
            similarity_after=None,
            seconds=time.perf_counter() - started,
            phase_seconds=clock.totals(),
            message=message,
            inputs=inputs,
        )

    if total < config.min_examples:
        return skip(
            f"your history gives {total} examples; below {config.min_examples}, adapters learned from it "
            "answered worse than your memory alone, so no adapter work was done and your answers keep using "
            "memory. Rate good replies or import your writing with `myna import`"
        )
    held_out = example_set.held_out[: config.held_out]
    if len(held_out) < MIN_HELD_OUT:
        raise MynaError(
            f"Your history gives {total} examples, so {len(held_out)} are held out for scoring; a merge needs "
            f"at least {MIN_HELD_OUT} held out (about {MIN_HELD_OUT * 5} examples in all). Rate good replies or "
            "import your writing with `myna import`."
        )
    community = [a for a in adapters.listing(db) if a.kind == "community" and a.base_fingerprint == arch.fingerprint]
    if not community:
        raise MynaError(
            "No community adapters are installed for this model; pull some with "
            "`myna adapters pull NAME --hub LOCATION` (a hub can be made with `myna hub build`)."
        )
    report("choosing community adapters")
    chosen, task_adapter = _choose(db, community, config.max_adapters)
    loras = [gguf_lora.read(a.gguf, arch) for a in chosen]
    task = gguf_lora.read(task_adapter.gguf, arch) if task_adapter else None
    if config.merge == "elementwise" and len({lora.rank for lora in loras}) > 1:
        raise MynaError("The chosen adapters have different ranks; merge them with --merge updates.")
    current = adapters.active(db)

    def inputs(active) -> str:
        return _inputs(arch, settings, system, config, example_set, chosen, task_adapter, active)

    last = None if again else runs.same_as_last(db, inputs(current))
    if last is not None:
        return skip(
            f"nothing changed since the run of {last.started_at[:16].replace('T', ' ')} (the same history, "
            "community adapters, options and active adapter), and a run on the same inputs finds the same "
            "adapter, so none was searched for; `myna personalize --again` runs anyway",
            last.inputs,
        )

    report("loading the models")  # llama.cpp's, and torch's copy (made once per data folder: ~25 s)
    engine = Engine.from_settings(settings, model=model)
    scoring_set = scoring.prepare(
        engine, held_out, system, max_length=config.max_length, probes=config.probes, probe_tokens=config.probe_tokens
    )
    llama_files = scoring.LlamaFileBackend(
        engine, loras, arch, workdir / "candidates", merge=config.merge, rank=config.rank, task=task
    )
    resources.callback(llama_files.close)
    # What the check asks: the held-out inputs as the search saw them, or as `myna ask` asks
    # them (with memory and its copy bias; set before the answer cache names what llama.cpp holds).
    check_set = served.as_served(db, engine, settings, scoring_set, llama_files) if config.check_memory else scoring_set
    backend, base = _backend(config, engine, loras, spec, workdir, chosen, task, task_adapter)
    resources.callback(backend.close)
    # What the sharers, the model without them and the current adapter answer is kept for the
    # next night, which mostly asks them the same inputs again.
    kept = answer_cache.AnswerCache(paths.subdir("cache") / "answers.json", arch.fingerprint)
    below = task_adapter.gguf if task_adapter else None
    search_view = answer_cache.Remembered(backend, kept, _sharer_names(backend, below, chosen))
    llama_view = answer_cache.Remembered(llama_files, kept, _sharer_names(llama_files, below, chosen))

    objective = scoring.Objective(config.metric, config.task, config.privacy)
    # Whatever the search maximizes, what is published must answer better: the current adapter
    # and the winner are judged in llama.cpp by the task metric of their answers to the
    # held-out inputs (minus alpha times the same privacy term).
    check = scoring.Objective("task", config.task, config.privacy)

    def judge(on, sharers) -> tuple[float, float | None]:
        return scoring.judge(on, check_set, sharers, check)

    # The "closest" term compares answers to the probes, the answer-based terms every held-out
    # input; "weights" compares no answers (the weights are its whole input).
    compares = config.probes if config.privacy == "closest" else config.privacy != "weights"
    report("asking each community adapter", 0, len(loras))
    # Each sharer answers once, in the search's backend (batched in torch: 75 s where llama.cpp,
    # one answer at a time, took 163 s in a profiled run), and the check compares llama.cpp's answers with
    # the same texts; only what belongs to llama.cpp (the answers without any community
    # adapter, the likelihoods) is computed again there.
    search_sharers = (
        scoring.sharer_outputs(search_view, scoring_set, len(loras), config.privacy)
        if compares
        else scoring.Sharers([])
    )
    if compares and not isinstance(backend, scoring.LlamaBackend):
        sharers = scoring.sharer_outputs(llama_view, scoring_set, len(loras), config.privacy, search_sharers.answers)
    else:
        sharers = search_sharers
    # The current adapter, judged in llama.cpp: the stack that answers the user.
    report("scoring the current adapter")
    engine.set_adapters([AdapterUse(current.gguf, 1.0, current.name)] if current else [])
    before_utility, before_similarity = judge(llama_view.holding(current.gguf if current else None), sharers)
    if config.privacy == "weights":
        before_similarity = _weights_of_current(db, current)
    fitness_before = before_utility - config.alpha * (before_similarity or 0.0)

    evaluate = scoring.Evaluator(
        backend,
        scoring_set,
        search_sharers if config.alpha > 0 else scoring.Sharers([]),
        objective,
        race_alpha=config.alpha,
        adapters=len(loras),
    )
    # Per adapter, or per adapter and layer (adapter by adapter: merge.py reads it so).
    dimensions = len(loras) * (arch.n_layers if config.per_layer else 1)
    report("searching merge weights", 0, config.budget)  # a trial is reported when it ends
    result = evolve(
        evaluate,
        dimensions,
        budget=config.budget,
        alpha=config.alpha,
        optimizer=config.optimizer,
        seed=config.seed,
        on_trial=lambda number, budget, trial: report("searching merge weights", number, budget),
        should_stop=should_stop,
        starts=_starts(db, chosen, dimensions),
    )
    if should_stop():
        raise KeyboardInterrupt
    # The search is over: a llama.cpp backend must let go of its adapters before the check, and
    # torch's LoRA layers must leave the model before training wraps it in its own.
    backend.close()
    best_weights = np.asarray(result.best.weights)
    winner = scoring.candidate(loras, best_weights, config.merge, config.rank, task)
    if winner is None:  # the search's best is the bare base model: an adapter that changes nothing
        winner = scoring.combine(loras, best_weights, config.merge, config.rank)
    kind, label = "merged", "merged"
    audit = None  # membership inference of the user's own adapter, for the data card
    alone = None  # the own adapter trained without the merge, judged beside the winner

    if config.train_own:
        report("training your own adapter on top of the merge")
        own = _train_own(base, spec, example_set, system, winner, config, workdir / "own")
        if own is not None:
            shape, winner, kind, label, audit = winner, own.lora, "personal", "personal", own.audit
            if config.own_alone:
                report("training your own adapter alone")
                alone = _train_own(base, spec, example_set, system, shape, config, workdir / "alone", on_top=False)

    report("checking the winner in llama.cpp")

    def checked(lora, name: str, weights) -> tuple[float, float | None, float]:
        """Its utility, similarity and fitness, judged in llama.cpp (the weights term from
        the merge `weights` under it)."""
        path = gguf_lora.write(lora, workdir / f"{name}.gguf", arch)
        engine.set_adapters([AdapterUse(path)])
        # Kept under the file's content: published, it is the next night's current adapter.
        utility, similarity = judge(llama_view.holding(path), sharers)
        if config.privacy == "weights":
            similarity = scoring.weight_term(weights, len(loras))
        return utility, similarity, utility - config.alpha * (similarity or 0.0)

    after_utility, after_similarity, fitness_after = checked(winner, "winner", best_weights)
    # The own adapter alone instead, if it answers better (the card keeps both fitnesses).
    fitnesses = {"own_on_merge": fitness_after}
    without_merge = False
    if alone is not None:
        utility, similarity, fitnesses["own_alone"] = checked(alone.lora, "alone", np.zeros_like(best_weights))
        without_merge = fitnesses["own_alone"] > fitness_after
        if without_merge:
            winner, audit = alone.lora, alone.audit
            after_utility, after_similarity, fitness_after = utility, similarity, fitnesses["own_alone"]
    engine.set_adapters([])
    kept.save()
    names = [a.name for a in chosen]
    by_layer = best_weights.reshape(len(loras), -1)
    weights = [round(float(w), 4) for w in by_layer.mean(axis=1)]  # per layer: each adapter's mean
    common = dict(
        run_id=run_id,
        adapters=names,
        weights=weights,
        fitness_before=fitness_before,
        fitness_after=fitness_after,
        similarity_before=before_similarity,
        similarity_after=after_similarity,
    )
    if fitness_after <= fitness_before:
        return Outcome(
            **common,
            status="no-improvement",
            published=None,
            seconds=time.perf_counter() - started,
            phase_seconds=clock.totals(),
            inputs=inputs(current),
            message=(
                f"your own adapter scored {fitnesses['own_on_merge']:.4f} on the best merge and "
                f"{fitnesses['own_alone']:.4f} alone"
                if alone is not None
                else f"the best merge scored {fitness_after:.4f}"
            )
            + f", not better than the current {fitness_before:.4f}; the current adapter stays",
        )

    report("publishing")
    from merger.formats.publish import publish

    card = {
        "kind": kind,
        "method": "own adapter (OPPU), which answered better alone than on the best merge of community adapters"
        if without_merge
        else "evolutionary merge of community adapters (PriME)"
        + (" + own adapter (OPPU)" if kind == "personal" else ""),
        "base_model": {"name": spec.name, "fingerprint": arch.fingerprint},
        "lora": {"rank": winner.rank, "alpha": winner.alpha, "targets": winner.modules()},
        "merge": {
            "adapters": names,
            "weights": weights,
            **({"weights_by_layer": by_layer.round(4).tolist()} if config.per_layer else {}),
            "method": config.merge,
            "optimizer": config.optimizer,
            "budget": config.budget,
            "alpha": config.alpha,
            "privacy_term": config.privacy,
            "on_top_of_task_adapter": task_adapter.name if task_adapter else None,
            "used": not without_merge,  # False: the search ran, but the own adapter alone answered better
        },
        "data": {
            **example_set.summary(),
            "used_for": (
                "choosing between your adapter on the merge and alone" if without_merge else "scoring the merge"
            )
            + " on held-out examples"
            + (" and training" if kind == "personal" else ""),
        },
        "metrics": {
            "fitness_before": fitness_before,
            "fitness_after": fitness_after,
            "utility_before": before_utility,
            "utility_after": after_utility,
            "similarity_to_sharers_before": before_similarity,
            "similarity_to_sharers_after": after_similarity,
            "privacy_term": config.privacy,
            "metric": "the task metric of answers in llama.cpp (held out"
            + (", asked with your memory as Myna asks it)" if check_set is not scoring_set else ")"),
            "search_metric": config.metric,
            **({f"fitness_{name}": value for name, value in fitnesses.items()} if alone is not None else {}),
        },
        "privacy": (
            "Trained on your own history, which never left this machine."
            if without_merge
            else "Merged from community adapters with weights chosen on your own history, which never left "
            "this machine."
        )
        + " Share it only with people you would show that history to."
        + (
            " Its held-out texts also chose the merge's weights, which the attack below does not see."
            if audit and not without_merge
            else ""
        ),
        **({"privacy_audit": audit.as_card()} if audit else {}),
    }
    adapter = publish(
        db, winner, arch, stem=label, kind=kind, card=card, activate=True, reason=f"personalization run {run_id}"
    )
    return Outcome(
        **common,
        status="published",
        published=adapter.name,
        seconds=time.perf_counter() - started,
        phase_seconds=clock.totals(),
        inputs=inputs(adapter),
        message=f"'{adapter.name}' is active: fitness {fitness_before:.4f} -> {fitness_after:.4f}"
        + (
            f" (your own adapter alone; on the best merge it scored {fitnesses['own_on_merge']:.4f})"
            if without_merge
            else ""
        ),
    )


def _inputs(arch, settings, system, config, example_set, chosen, task_adapter, active) -> str:
    """What a run's result depends on: Myna's version, the model, the settings it answers
    with, the options, every example (with the memory its prompt shows), the chosen community
    adapters and their task adapter, and the active adapter it must beat (files by content)."""

    def content(adapter) -> str:
        return sha256_file(adapter.gguf)

    try:
        version = metadata.version("myna")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return runs.inputs(
        version,
        arch.fingerprint,
        system,
        str(settings.context_size),
        # What memory the check's answers are given, when it gives them any.
        json.dumps({k: v for k, v in asdict(settings).items() if k.startswith(("memory", "retrieval"))}, sort_keys=True)
        if config.check_memory
        else "",
        json.dumps(asdict(config), sort_keys=True),
        *(json.dumps(asdict(e), sort_keys=True, default=str) for e in example_set.train + example_set.held_out),
        *(content(a) for a in chosen),
        content(task_adapter) if task_adapter else "no task adapter",
        content(active) if active else "no active adapter",
    )


def _weights_of_current(db, current) -> float:
    """The "weights" privacy term of the active adapter: what the run that published it
    recorded (by this term), else the L1 norm of that run's merge weights; 0 for the base
    model and for an adapter no search of this folder published."""
    if current is None:
        return 0.0
    made = runs.last_published(db)
    if made is None or made.published != current.name:
        return 0.0
    if made.config.get("privacy") == "weights" and made.similarity_after is not None:
        return made.similarity_after
    return scoring.weight_term(made.weights, len(made.weights))  # per adapter, as the card keeps them


def _starts(db, chosen, dimensions: int) -> tuple[np.ndarray, ...]:
    """Where the search begins after the base model: the uniform average (so it ends no worse
    than that), then the weights the last search chose for the same adapters, if any (a night
    with a little more history starts from the merge that fitted the night before)."""
    uniform = np.full(dimensions, 1.0 / len(chosen))
    last = runs.last_search(db)
    if last is None or last.adapters != [a.name for a in chosen]:
        return (uniform,)
    before = np.repeat(np.asarray(last.weights, dtype=float), dimensions // len(chosen))  # per layer: its mean
    return (uniform,) if np.allclose(before, uniform) else (uniform, before)


def _sharer_names(backend, below, chosen):
    """How the answer cache names what `backend` holds: each sharer alone, or no sharer (on
    top of the task adapter `below`, if any); None for any other weights."""
    kind = answer_cache.kind(backend)
    alone = [answer_cache.stack(kind, below, adapter.gguf) for adapter in chosen]
    without = answer_cache.stack(kind, below, None)

    def name_of(weights) -> str | None:
        weights = np.asarray(weights, dtype=float)
        if not weights.any():
            return without
        if weights.size == len(alone) and np.count_nonzero(weights) == 1 and weights.max() == 1.0:
            return alone[int(np.argmax(weights))]
        return None

    return name_of


def _choose(db, community: list, count: int):
    """The `count` community adapters most relevant to the user, all trained on top of the
    same task adapter (or none) as the most relevant one, and that task adapter."""
    from merger.hub.client import task_adapter

    ranked = [adapter for adapter, _ in selection.rank(db, community)]
    below = ranked[0].card.get("task_adapter_sha256")
    chosen = [a for a in ranked if a.card.get("task_adapter_sha256") == below][:count]
    if below is None:
        return chosen, None
    found = task_adapter(db, below)
    if found is None:
        raise MynaError(
            f"'{chosen[0].name}' is applied on top of the task adapter '{chosen[0].card.get('task_adapter')}', "
            f"which is not installed; remove '{chosen[0].name}' and pull it again to install both."
        )
    return chosen, found


def _backend(config, engine, loras, spec, workdir, chosen, task, task_adapter):
    if config.backend == "file":
        return scoring.LlamaFileBackend(
            engine, loras, architecture(spec), workdir / "search", merge=config.merge, rank=config.rank, task=task
        ), None
    if config.backend == "scales":
        below = task_adapter.gguf if task_adapter else None
        return scoring.LlamaScalesBackend(engine, [a.gguf for a in chosen], below), None
    from merger.training import torch_model

    base = torch_model.load(spec)
    return scoring.TorchBackend(base, loras, merge=config.merge, rank=config.rank, task=task), base


def _train_own(base, spec, example_set, system, merged, config, workdir: Path, on_top: bool = True):
    """OPPU on top of the merge (the merge plays the task-level adapter), or with `on_top`
    False alone, of the merge's shape: the training's result, or None if the history is too
    small to train on."""
    from merger.training import torch_model
    from merger.training import train as trainer

    if len(example_set.train) < example_builder.MIN_TRAIN:
        return None
    base = base or torch_model.load(spec)
    train_config = trainer.TrainConfig(
        rank=merged.rank, alpha=merged.alpha, targets=tuple(merged.modules()), seed=config.seed
    )
    start = merged if on_top else None
    return trainer.train(base, example_set, train_config, system=system, workdir=workdir, start_from=start)
