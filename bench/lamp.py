"""The personalization benchmark: every method of the three papers behind Myna, on the same
base model, users and splits, through Myna's own code paths.

    python -m bench lamp [--quick] [--tasks LaMP_4,LaMP_7] [--lamp QUESTIONS OUTPUTS]

Stages cache their results under bench/results/cache/, so a run that crashes resumes where it
stopped. Results go to bench/results/lamp[-quick]/: results.json, results.md, plots/*.png.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from bench.common import RESULTS
from bench.datasets import BUILDERS, Dataset, Question, load

MAX_TOKENS = {"LaMP_1": 6, "LaMP_2": 8, "LaMP_3": 4, "LaMP_4": 24, "LaMP_5": 32, "LaMP_6": 24, "LaMP_7": 48}


@dataclass(frozen=True)
class Plan:
    quick: bool = False
    tasks: tuple[str, ...] = ("LaMP_4", "LaMP_7")
    users: int = 4
    questions: int = 8
    profile: dict = field(default_factory=lambda: {"LaMP_4": 64, "LaMP_7": 96})
    epochs: int = 2
    max_length: int = 192
    budget: int = 16
    alpha: float = 0.5
    alphas: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
    sweep_users: int = 1
    held_out: int = 12
    probes: int = 4
    probe_tokens: int = 16
    fractions: tuple[float, ...] = (0.25, 0.5, 1.0)
    article_words: int = 150
    rag_modes: tuple[str, ...] = ("bm25", "embeddings", "hybrid")
    rag_ks: tuple[int, ...] = (1, 2, 4)
    rag_with_adapters: tuple = ("hybrid", 4)  # the shipped retrieval (Settings)
    # Memory layouts (assistant/prompt.py) compared side by side, each with rag_with_adapters.
    layouts: tuple[str, ...] = ("system", "user", "demos")
    min_examples: int = 8  # fewer training examples than this: no adapter (cold start)
    memory_room: int = 256  # tokens added to max_length for the memory an OPPU trained with memory sees
    oppu_variants: bool = True  # OPPU trained with memory, and OPPU trained on top of PriME
    pool: int = 8  # community adapters merged for a user at most: the most similar authors
    lorahub_l1: float = 0.05
    mia_examples: int = 16
    canaries: int = 4
    canary_candidates: int = 100
    seed: int = 0

    def key(self) -> str:
        """What the cached stages depend on; not which tasks run, so `--tasks` runs of one
        task at a time fill the same cache a full run reads."""
        settings = {k: v for k, v in asdict(self).items() if k != "tasks"}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


QUICK = Plan(quick=True, users=3, questions=2, profile={"LaMP_4": 20, "LaMP_7": 24}, epochs=1, max_length=128,
             budget=4, alphas=(0.0, 1.0), sweep_users=1, held_out=4, probes=2, probe_tokens=8, fractions=(0.5, 1.0),
             mia_examples=4, canaries=2, canary_candidates=16, article_words=40, rag_modes=("bm25", "hybrid"),
             rag_ks=(1, 4), layouts=("system", "demos"), memory_room=64)


def cached(path: Path, compute) -> dict:
    """A stage's result: read if it was computed before, else computed now and saved."""
    if path.exists():
        return json.loads(path.read_text())
    started = time.perf_counter()
    value = compute()
    value.setdefault("seconds", time.perf_counter() - started)
    value.setdefault("peak_mib", peak_mib())  # the process's peak so far: an upper bound for the stage
    from assistant.atomic import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(value))
    return value


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Bench:
    """Shared state of one run: the engine, the torch base, per-user stores."""

    def __init__(self, plan: Plan, work: Path) -> None:
        from assistant.catalogue import resolve
        from assistant.engine import Engine
        from assistant.settings import Settings
        from merger.base_model import architecture

        self.plan, self.work = plan, work
        self.settings = Settings()
        self.spec = resolve(self.settings.model)
        self.arch = architecture(self.spec)
        self.engine = Engine(self.spec, context_size=4096)
        self._base = None

    @property
    def base(self):
        if self._base is None:
            from merger import torch_model

            self._base = torch_model.load(self.spec)
        return self._base

    # -- users -----------------------------------------------------------------------------------

    def folder(self, task: str, user: str) -> Path:
        return self.work / task / user

    def store(self, task: str, user: str, questions: list[Question], fraction: float = 1.0):
        """The user's store with their profile imported through `myna import`'s code path."""
        from assistant.memory import ingest
        from assistant.store import open_database

        name = "myna.db" if fraction == 1.0 else f"myna-{int(fraction * 100)}.db"
        self.folder(task, user).mkdir(parents=True, exist_ok=True)
        db = open_database(self.folder(task, user) / name)
        if not db.execute("SELECT COUNT(*) FROM sources").fetchone()[0]:
            profile = sorted(questions[0].profile, key=lambda item: str(item.get("date", "")))
            profile = profile[len(profile) - max(1, round(len(profile) * fraction)):]  # the newest part
            path = self.folder(task, user) / f"profile-{int(fraction * 100)}.json"
            path.write_text(json.dumps([{"id": f"{user}-profile", "input": "", "profile": profile}]))
            ingest.import_paths(db, [path])
        return db

    def examples(self, db, memory: bool = False):
        from merger import examples

        return examples.from_store(db, seed=self.plan.seed, memory=self.settings if memory else None)

    # -- adapters --------------------------------------------------------------------------------

    def train_oppu(self, task: str, user: str, db, name: str = "oppu", memory: bool = False,
                   start: str | None = None) -> dict:
        """The user's own adapter (OPPU): on their profile alone, or `memory`: each example with
        what recall gives it, laid out as chat lays it out; from `start` (a merge) if given."""
        from merger import gguf_lora
        from merger import train as trainer

        def compute():
            example_set = self.examples(db, memory)
            if len(example_set.train) < self.plan.min_examples:
                # Too little history for an adapter: this user is answered with memory alone.
                return {"path": None, "cold_start": True, "examples": len(example_set.train), "seconds": 0.0}
            length = self.plan.max_length + (self.plan.memory_room if memory else 0)
            config = trainer.TrainConfig(epochs=self.plan.epochs, max_length=length, seed=self.plan.seed)
            result = trainer.train(self.base, example_set, config, system=self.settings.system_prompt,
                                   workdir=self.folder(task, user) / f"train-{name}", min_examples=self.plan.min_examples,
                                   start_from=self.lora(start) if start else None)
            path = gguf_lora.write(result.lora, self.folder(task, user) / f"{name}.gguf", self.arch)
            return {"path": str(path), "seconds": result.seconds,
                    "bytes": path.stat().st_size, "examples": len(example_set.train),
                    "held_out_before": result.held_out_before, "held_out_after": result.held_out_after}

        return cached(self.folder(task, user) / f"{name}.json", compute)

    def pool(self, task: str, user: str, stores: dict, adapters: dict[str, str]) -> dict[str, str]:
        """The community a user's merge draws on: the other users' adapters, the `plan.pool`
        whose authors write most like this user (mean embedding of their memories), as
        `myna personalize` selects them."""
        from merger import selection

        if len(adapters) <= self.plan.pool:
            return adapters
        mine = selection.user_vector(stores[user])
        closeness = {v: float(np.dot(mine, selection.user_vector(stores[v]))) for v in adapters}
        return {v: adapters[v] for v in sorted(adapters, key=lambda v: -closeness[v])[: self.plan.pool]}

    def lora(self, path: str):
        from merger import gguf_lora

        return gguf_lora.read(Path(path), self.arch)

    def merges(self, task: str, user: str, db, pool: dict[str, str], alphas: tuple[float, ...],
               tag: str = "", baselines: bool = True) -> dict:
        """PriME at each alpha, and (unless `baselines` is False) the uniform, best-single and
        LoraHub baselines, from the adapters in `pool` (the other users'), scored on this
        user's held-out examples."""
        from merger import gguf_lora, scoring, search

        def compute():
            names = sorted(pool)
            loras = [self.lora(pool[n]) for n in names]
            held_out = self.examples(db).held_out[: self.plan.held_out]
            scoring_set = scoring.prepare(self.base, held_out, self.settings.system_prompt, max_length=self.plan.max_length,
                                          probes=self.plan.probes, probe_tokens=self.plan.probe_tokens)
            backend = scoring.TorchBackend(self.base, loras, merge="elementwise")
            out = {"adapters": names}
            try:
                started = time.perf_counter()
                sharers = scoring.sharer_outputs(backend, scoring_set, len(loras))
                probe_seconds = time.perf_counter() - started
                evaluate = scoring.evaluator(backend, scoring_set, sharers)

                def save(label, weights, seconds, extra=None):
                    merged = scoring.combine(loras, np.asarray(weights), "elementwise")
                    path = gguf_lora.write(merged, self.folder(task, user) / f"{label}{tag}.gguf", self.arch)
                    utility, sim = evaluate(weights)
                    out[label] = {"path": str(path), "weights": [float(w) for w in weights], "seconds": seconds,
                                  "utility": utility, "similarity": sim, "bytes": path.stat().st_size, **(extra or {})}

                for alpha in alphas:
                    started = time.perf_counter()
                    result = search.evolve(evaluate, len(loras), budget=self.plan.budget, alpha=alpha,
                                           optimizer="NGOpt", seed=self.plan.seed)
                    save(f"prime-a{alpha:g}", result.best.weights, time.perf_counter() - started + probe_seconds)
                if baselines:
                    self._baselines(names, evaluate, save)
            finally:
                backend.close()
            return out

        return cached(self.folder(task, user) / f"merges{tag}.json", compute)

    def _baselines(self, names: list[str], evaluate, save) -> None:
        """Uniform average, best single adapter, LoraHub (likelihood with an L1 penalty)."""
        from merger import search

        count = len(names)
        save("uniform", [1.0 / count] * count, 0.0)
        started = time.perf_counter()
        singles = [evaluate(np.eye(count)[i])[0] for i in range(count)]
        best = int(np.argmax(singles))
        save("best-single", np.eye(count)[best], time.perf_counter() - started, {"chosen": names[best]})
        started = time.perf_counter()
        l1 = self.plan.lorahub_l1

        def lorahub(weights):
            value, _ = evaluate(weights)
            return value - l1 * float(np.abs(weights).sum()), None

        result = search.evolve(lorahub, count, budget=self.plan.budget, optimizer="NGOpt", seed=self.plan.seed)
        save("lorahub", result.best.weights, time.perf_counter() - started)

    # -- answers -----------------------------------------------------------------------------------

    def predict(self, task: str, user: str, questions: list[Question], method: str, db, adapter: str | None,
                rag: tuple[str, int] | None, layout: str | None = None) -> dict:
        """Greedy answers to a user's questions, with memory laid out as `myna ask` lays it
        out (assistant.replies.with_memory) when `rag` is given; what each prompt held is
        kept with the answer."""
        from assistant import prompt as prompts
        from assistant import replies
        from assistant.engine import AdapterUse, SamplingParams

        settings = self.settings
        if rag:
            settings = replace(settings, retrieval_mode=rag[0], retrieval_top_k=rag[1],
                               memory_layout=layout or settings.memory_layout)
        memory_key = json.dumps([asdict(settings), adapter], sort_keys=True) if rag else str(adapter)
        digest = hashlib.sha256(memory_key.encode()).hexdigest()[:8]

        def compute():
            started = time.perf_counter()
            self.engine.set_adapters([AdapterUse(Path(adapter))] if adapter else [])
            params = SamplingParams(max_tokens=MAX_TOKENS[task], temperature=0.0, copy_bias=settings.memory_copy_bias)
            predictions, contexts = {}, {}
            for question in questions:
                grounded = prompts.Grounded(settings.system_prompt, (), question.input, ())
                if rag:
                    grounded = replies.with_memory(db, self.engine, settings, question.input)
                chat = prompts.build_chat(grounded.system, [], grounded.user_text, grounded.demonstrations)
                tokens = self.engine.tokenize_chat(chat)
                budget = self.engine.context_size - MAX_TOKENS[task] - 8
                if len(tokens) > budget:  # an overlong article: keep the instructions and the answer's start
                    tokens = tokens[: budget // 2] + tokens[-budget // 2 :]
                done = self.engine.generate(tokens, params, lambda piece: None,
                                            favoured=replies.favoured_tokens(self.engine, grounded.quoted))
                predictions[question.id] = done.text.strip()
                contexts[question.id] = [memory.text for memory in grounded.used]
            self.engine.set_adapters([])
            return {"predictions": predictions, "contexts": contexts, "seconds": time.perf_counter() - started}

        return cached(self.folder(task, user) / "predictions" / f"{method}-{digest}.json", compute)


@dataclass(frozen=True)
class Method:
    model: str | None  # "oppu", or a merge's label ("prime-a0.5", "uniform", ...); None: no adapter
    rag: tuple[str, int] | None  # (retrieval mode, k)
    layout: str | None = None  # the memory layout; None: the shipped default


def default_rag() -> tuple[str, int]:
    """What a user gets from memory with the shipped settings."""
    from assistant.settings import Settings

    return Settings().retrieval_mode, Settings().retrieval_top_k


def methods_for(plan: Plan, with_merges: bool) -> dict[str, Method]:
    from assistant.settings import Settings

    rag = tuple(plan.rag_with_adapters)
    table = {"non-personalized": Method(None, None)}
    for mode in plan.rag_modes:
        for k in plan.rag_ks:
            table[f"RAG {mode} k={k}"] = Method(None, (mode, k))
    for layout in plan.layouts:
        if layout != Settings().memory_layout:
            table[f"RAG {rag[0]} k={rag[1]}, {layout} layout"] = Method(None, rag, layout)
    table["OPPU"] = Method("oppu", None)
    table[f"OPPU + RAG {rag[0]} k={rag[1]}"] = Method("oppu", rag)
    if plan.oppu_variants:
        table["OPPU trained with memory"] = Method("oppu-memory", None)
        table[f"OPPU trained with memory + RAG {rag[0]} k={rag[1]}"] = Method("oppu-memory", rag)
    if with_merges:
        penalized = f"prime-a{plan.alpha:g}"
        table[f"PriME (alpha {plan.alpha:g})"] = Method(penalized, None)
        table[f"PriME (alpha {plan.alpha:g}) + RAG {rag[0]} k={rag[1]}"] = Method(penalized, rag)
        table["PriME (no privacy penalty)"] = Method("prime-a0", None)
        table[f"PriME (no privacy penalty) + RAG {rag[0]} k={rag[1]}"] = Method("prime-a0", rag)
        table["uniform average of community adapters"] = Method("uniform", None)
        table["best single community adapter"] = Method("best-single", None)
        table["LoraHub (likelihood + L1)"] = Method("lorahub", None)
        if plan.oppu_variants:
            table[f"OPPU on top of PriME (alpha {plan.alpha:g})"] = Method("prime-oppu", None)
            table[f"OPPU on top of PriME (alpha {plan.alpha:g}) + RAG {rag[0]} k={rag[1]}"] = Method("prime-oppu", rag)
    return table


def default_method(table: dict[str, Method]) -> str | None:
    """The row that is what a new user gets: no adapter yet, memory with the shipped settings."""
    rag = default_rag()
    return next((name for name, m in table.items() if m.model is None and m.rag == rag and m.layout is None), None)


def model_record(models: dict, key: str | None) -> dict | None:
    """The record (path, seconds, bytes, ...) of one user's model for a method; None when the
    method needs no model or this user has none (too little history: cold start)."""
    if key is None:
        return None
    if key in TRAINED:
        record = models.get(f"{key}-record")
        return record if record and record.get("path") else None
    merges = models.get("merges") or {}
    if key not in merges:
        return None
    return {**merges[key], "peak_mib": merges.get("peak_mib")}


TRAINED = ("oppu", "oppu-memory", "prime-oppu")  # adapters trained for the user (the rest are merges)


def as_served(spec: Method, record: dict | None) -> Method:
    """What a user actually gets for a method: without the model it needs (a cold start),
    memory with the shipped settings."""
    if spec.model is None or record is not None:
        return spec
    return Method(None, spec.rag or default_rag(), spec.layout)


def dataset_for(task: str, plan: Plan, work: Path, lamp: tuple[Path, Path] | None) -> Dataset:
    folder = work / "datasets"
    questions, outputs = folder / f"{task}_questions.json", folder / f"{task}_outputs.json"
    if lamp:
        return load(*lamp)
    if not questions.exists():
        built = BUILDERS[task](users=plan.users, questions=plan.questions, profile=plan.profile[task], seed=plan.seed,
                               words=plan.article_words)
        built.write(folder)
    dataset = load(questions, outputs)
    dataset.manifest = json.loads((folder / f"{task}_manifest.json").read_text())
    return dataset


def run(plan: Plan, lamp: tuple[Path, Path] | None = None, on_stage=print) -> dict:
    from bench import lamp_diagnose, lamp_privacy, lamp_report

    work = RESULTS / "cache" / f"{run_name(plan, lamp)}-{plan.key()}"
    work.mkdir(parents=True, exist_ok=True)
    # Caches of the converted base model, shared by every run; never the user's own data folder.
    os.environ["MYNA_HOME"] = str(RESULTS / "cache" / "home")
    started = time.perf_counter()
    bench = Bench(plan, work)
    tasks = [load(*lamp).task] if lamp else list(plan.tasks)
    results = {"plan": asdict(plan), "tasks": {}}
    for task in tasks:
        on_stage(f"{task}: dataset")
        dataset = dataset_for(task, plan, work, lamp)
        users = dataset.users()
        stores = {u: bench.store(task, u, dataset.of(u)) for u in users}
        models = {u: {} for u in users}
        for user in users:
            on_stage(f"{task}: OPPU adapter for {user}")
            models[user]["oppu-record"] = bench.train_oppu(task, user, stores[user])
            models[user]["oppu"] = models[user]["oppu-record"]["path"]
        trained = [u for u in users if models[u]["oppu"]]
        cold = {u: models[u]["oppu-record"]["examples"] for u in users if not models[u]["oppu"]}
        for number, user in enumerate(users):
            pool = bench.pool(task, user, stores, {v: models[v]["oppu"] for v in trained if v != user})
            if not pool or not bench.examples(stores[user]).held_out:
                continue  # no community to merge, or nothing of this user's to score a merge on
            on_stage(f"{task}: merges for {user}")
            alphas = plan.alphas if number < plan.sweep_users else (0.0, plan.alpha)
            models[user]["merges"] = bench.merges(task, user, stores[user], pool, tuple(sorted(set(alphas) | {0.0, plan.alpha})))
        if plan.oppu_variants:
            for user in trained:
                on_stage(f"{task}: OPPU trained with memory for {user}")
                models[user]["oppu-memory-record"] = bench.train_oppu(task, user, stores[user], "oppu-memory", memory=True)
                merged = (models[user].get("merges") or {}).get(f"prime-a{plan.alpha:g}")
                if merged:
                    on_stage(f"{task}: OPPU on top of PriME for {user}")
                    models[user]["prime-oppu-record"] = bench.train_oppu(task, user, stores[user], "prime-oppu",
                                                                         start=merged["path"])
        predictions: dict[str, dict[str, dict]] = {}
        table = methods_for(plan, any(models[u].get("merges") for u in users))
        for user in users:
            for method, spec in table.items():
                on_stage(f"{task}: {method} for {user}")
                record = model_record(models[user], spec.model)
                served = as_served(spec, record)
                name = method if served == spec else "cold start"
                predictions.setdefault(method, {})[user] = bench.predict(
                    task, user, dataset.of(user), name, stores[user], record["path"] if record else None,
                    served.rag, served.layout)
        on_stage(f"{task}: amount of user data")
        amounts = lamp_report.data_amounts(bench, task, dataset, plan)
        on_stage(f"{task}: privacy")
        privacy = lamp_privacy.run(bench, task, dataset, stores, models, plan)
        on_stage(f"{task}: diagnostics")
        diagnostics = lamp_diagnose.run(bench, task, dataset, stores, predictions, models, table)
        costs = {method: [model_record(models[u], spec.model) for u in users] for method, spec in table.items()}
        results["tasks"][task] = lamp_report.summarize(task, dataset, predictions, costs, amounts, privacy, plan)
        results["tasks"][task]["diagnostics"] = diagnostics
        results["tasks"][task]["cold_start"] = cold
        results["tasks"][task]["default_method"] = default_method(table)
    results["wall_seconds"] = time.perf_counter() - started
    results["stage_seconds"], stage_peak = stage_totals(work)
    results["peak_mib"] = max(peak_mib(), stage_peak)
    return results


def stage_totals(work: Path) -> tuple[float, float]:
    """What the whole run costs from scratch: every cached stage's own time, whichever
    invocation computed it (a resumed run's wall time counts only what it redid), and the
    highest process peak (MiB) any stage recorded."""
    seconds, peak = 0.0, 0.0
    for path in work.rglob("*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):  # stage records; a dataset's files are lists
            seconds += record.get("seconds", 0.0)
            peak = max(peak, record.get("peak_mib") or 0.0)
    return seconds, peak


def run_name(plan: Plan, lamp: tuple[Path, Path] | None) -> str:
    """What a run's cache and results are called: a LaMP pair given by path gets its own,
    named by its content, so no two pairs ever share a user's store or adapter."""
    name = f"lamp-{'quick' if plan.quick else 'full'}" if lamp is None else f"lamp{'-quick' if plan.quick else ''}"
    if lamp is None:
        return name
    digest = hashlib.sha256(b"".join(Path(p).read_bytes() for p in lamp)).hexdigest()[:10]
    return f"{name}-{Path(lamp[0]).stem}-{digest}"


def main(quick: bool, tasks: list[str] | None, lamp: tuple[Path, Path] | None) -> None:
    from bench import lamp_report

    plan = QUICK if quick else Plan()
    if tasks:
        plan = replace(plan, tasks=tuple(tasks))
    results = run(plan, lamp, on_stage=lambda stage: print(f"[{time.strftime('%H:%M:%S')}] {stage}", flush=True))
    out = RESULTS / ("lamp-quick" if quick else "lamp") if lamp is None else RESULTS / run_name(plan, lamp)
    lamp_report.write(results, out)
    print((out / "results.md").read_text())
