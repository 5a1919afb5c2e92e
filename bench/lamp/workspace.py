"""One benchmark run's workspace: the engine and torch base shared by every stage, each user's
folder, and the stages that make stores, adapters, merges and answers (each cached)."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from bench.datasets import Question
from bench.lamp.cache import cached
from bench.lamp.plan import FAMILIES, MAX_TOKENS, TERM_FAMILY, Plan
from bench.lamp.records import Adapter, Answers, Merge, Merges


class Workspace:
    """One run's shared state (the engine, the torch base, the users' folders) and its stages,
    each cached under the run's folder."""

    def __init__(self, plan: Plan, work: Path) -> None:
        from assistant.catalogue import resolve
        from assistant.engine import Engine
        from assistant.settings import Settings
        from merger.formats.base_model import architecture

        self.plan, self.work = plan, work
        self.settings = Settings()
        self.spec = resolve(self.settings.model)
        self.arch = architecture(self.spec)
        self.engine = Engine(self.spec, context_size=4096)
        self._base = None

    @property
    def base(self):
        if self._base is None:
            from merger.training import torch_model

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
            profile = profile[len(profile) - max(1, round(len(profile) * fraction)) :]  # the newest part
            path = self.folder(task, user) / f"profile-{int(fraction * 100)}.json"
            path.write_text(json.dumps([{"id": f"{user}-profile", "input": "", "profile": profile}]))
            ingest.import_paths(db, [path])
        return db

    def examples(self, db, memory: bool = False):
        from merger.data import examples

        return examples.from_store(db, seed=self.plan.seed, memory=self.settings if memory else None)

    # -- adapters --------------------------------------------------------------------------------

    def train_oppu(
        self, task: str, user: str, db, name: str = "oppu", memory: bool = False, start: str | None = None
    ) -> Adapter:
        """The user's own adapter (OPPU): on their profile alone, or `memory`: each example with
        what recall gives it, laid out as chat lays it out; from `start` (a merge) if given."""
        from merger.formats import gguf_lora
        from merger.training import train as trainer

        def compute():
            example_set = self.examples(db, memory)
            if len(example_set.train) < self.plan.min_examples:
                # Too little history for an adapter: this user is answered with memory alone.
                return Adapter(path=None, cold_start=True, examples=len(example_set.train), seconds=0.0)
            length = self.plan.max_length + (self.plan.memory_room if memory else 0)
            config = trainer.TrainConfig(epochs=self.plan.epochs, max_length=length, seed=self.plan.seed)
            result = trainer.train(
                self.base,
                example_set,
                config,
                system=self.settings.system_prompt,
                workdir=self.folder(task, user) / f"train-{name}",
                min_examples=self.plan.min_examples,
                start_from=self.lora(start) if start else None,
            )
            path = gguf_lora.write(result.lora, self.folder(task, user) / f"{name}.gguf", self.arch)
            return Adapter(
                path=str(path),
                seconds=result.seconds,
                bytes=path.stat().st_size,
                examples=len(example_set.train),
                held_out_before=result.held_out_before,
                held_out_after=result.held_out_after,
            )

        return cached(self.folder(task, user) / f"{name}.json", compute, Adapter)

    def pool(
        self, task: str, user: str, stores: dict, adapters: dict[str, str], size: int | None = None
    ) -> dict[str, str]:
        """The community a user's merge draws on: the other users' adapters, the `size` (by
        default `plan.pool`) whose authors write most like this user (mean embedding of their
        memories), as `myna personalize` selects them."""
        from merger.search import selection

        size = size or self.plan.pool
        if len(adapters) <= size:
            return adapters
        mine = selection.embed_user(stores[user])
        closeness = {v: float(np.dot(mine, selection.embed_user(stores[v]))) for v in adapters}
        return {v: adapters[v] for v in sorted(adapters, key=lambda v: -closeness[v])[:size]}

    def lora(self, path: str):
        from merger.formats import gguf_lora

        return gguf_lora.read(Path(path), self.arch)

    def merges(
        self,
        task: str,
        user: str,
        db,
        pool: dict[str, str],
        alphas: tuple[float, ...],
        tag: str = "",
        baselines: bool = True,
        privacy: str | None = None,
    ) -> Merges:
        """PriME at each alpha, and (unless `baselines` is False) the uniform, best-single and
        LoraHub baselines, from the adapters in `pool` (the other users'), scored on this
        user's held-out examples. With a `privacy` term: by the fitness of PriME's published
        code (the task metric of generated answers, minus alpha times that privacy term:
        "mean", as published, "excess" or "likelihood"), labelled by its family (plan.FAMILIES:
        "published-a{alpha}", "excess-a{alpha}", "likely-a{alpha}"), without baselines."""
        from merger.formats import gguf_lora
        from merger.search import evolution as search
        from merger.search import scoring

        def compute():
            names = sorted(pool)
            loras = [self.lora(pool[n]) for n in names]
            held_out = self.examples(db).held_out[: self.plan.held_out]
            scoring_set = scoring.prepare(
                self.base,
                held_out,
                self.settings.system_prompt,
                max_length=self.plan.max_length,
                probes=self.plan.probes,
                probe_tokens=self.plan.probe_tokens,
                answer_tokens=MAX_TOKENS[task],
            )
            backend = scoring.TorchBackend(self.base, loras, merge="elementwise")
            out = Merges(adapters=names)
            objective = replace(scoring.PUBLISHED, task=task, privacy=privacy) if privacy else scoring.Objective()
            prefix = FAMILIES[TERM_FAMILY[privacy]].prefix if privacy else FAMILIES["merged"].prefix
            try:
                started = time.perf_counter()
                sharers = scoring.sharer_outputs(backend, scoring_set, len(loras), objective.privacy)
                probe_seconds = time.perf_counter() - started
                evaluate = scoring.Evaluator(backend, scoring_set, sharers, objective)

                def save(label, weights, seconds, chosen=None):
                    merged = scoring.combine(loras, np.asarray(weights), "elementwise")
                    path = gguf_lora.write(merged, self.folder(task, user) / f"{label}{tag}.gguf", self.arch)
                    utility, sim, _ = evaluate(weights)
                    out.by_label[label] = Merge(
                        path=str(path),
                        weights=[float(w) for w in weights],
                        seconds=seconds,
                        utility=utility,
                        similarity=sim,
                        bytes=path.stat().st_size,
                        chosen=chosen,
                    )

                # Each alpha searches, as `myna personalize` does (from the base model, then the
                # uniform average); then each takes the best of every point any search evaluated.
                uniform = np.full(len(loras), 1.0 / len(loras))
                seconds = {}
                for alpha in alphas:
                    started = time.perf_counter()
                    search.evolve(
                        evaluate,
                        len(loras),
                        budget=self.plan.budget,
                        alpha=alpha,
                        optimizer="NGOpt",
                        seed=self.plan.seed,
                        starts=(uniform,),
                    )
                    seconds[alpha] = time.perf_counter() - started + probe_seconds
                for alpha in alphas:
                    label = f"{prefix}-a{alpha:g}"
                    save(label, evaluate.best(alpha).weights, seconds[alpha])
                if baselines:
                    self._baselines(names, evaluate, save)
            finally:
                backend.close()
            return out

        return cached(self.folder(task, user) / f"merges{tag}.json", compute, Merges)

    def _baselines(self, names: list[str], evaluate, save) -> None:
        """Uniform average, best single adapter, LoraHub (likelihood with an L1 penalty)."""
        from merger.search import evolution as search

        count = len(names)
        save("uniform", [1.0 / count] * count, 0.0)
        started = time.perf_counter()
        singles = [evaluate(np.eye(count)[i])[0] for i in range(count)]
        best = int(np.argmax(singles))
        save("best-single", np.eye(count)[best], time.perf_counter() - started, names[best])
        started = time.perf_counter()
        l1 = self.plan.lorahub_l1

        def lorahub(weights):
            value = evaluate(weights)[0]
            return value - l1 * float(np.abs(weights).sum()), None

        result = search.evolve(lorahub, count, budget=self.plan.budget, optimizer="NGOpt", seed=self.plan.seed)
        save("lorahub", result.best.weights, time.perf_counter() - started)

    # -- answers -----------------------------------------------------------------------------------

    def predict(
        self,
        task: str,
        user: str,
        questions: list[Question],
        method: str,
        db,
        adapter: str | None,
        rag: tuple[str, int] | None,
        layout: str | None = None,
    ) -> Answers:
        """Greedy answers to a user's questions, with memory laid out as `myna ask` lays it
        out (assistant.replies.with_memory) when `rag` is given; what each prompt held is
        kept with the answer."""
        from assistant import prompt as prompts
        from assistant import replies
        from assistant.engine import AdapterUse, SamplingParams

        settings = self.settings
        if rag:
            settings = replace(
                settings, retrieval_mode=rag[0], retrieval_top_k=rag[1], memory_layout=layout or settings.memory_layout
            )
        memory_key = json.dumps([asdict(settings), adapter], sort_keys=True) if rag else str(adapter)
        digest = hashlib.sha256(memory_key.encode()).hexdigest()[:8]

        def compute():
            started = time.perf_counter()
            self.engine.set_adapters([AdapterUse(Path(adapter))] if adapter else [])
            # From an empty cache: greedy answers depend on how much of a prompt llama.cpp reuses,
            # so a stage's answers must not depend on which stage this process ran before.
            self.engine.forget_prompt()
            params = SamplingParams(max_tokens=MAX_TOKENS[task], temperature=0.0, copy_bias=settings.memory_copy_bias)
            predictions, contexts = {}, {}
            for question in questions:
                grounded = prompts.Grounded(settings.system_prompt, (), question.input, ())
                if rag:
                    grounded = replies.with_memory(db, self.engine, settings, question.input)
                tokens, favoured = replies.one_shot(self.engine, grounded, MAX_TOKENS[task])
                done = self.engine.generate(tokens, params, lambda piece: None, favoured=favoured)
                predictions[question.id] = done.text.strip()
                contexts[question.id] = [memory.text for memory in grounded.used]
            self.engine.set_adapters([])
            return Answers(predictions=predictions, contexts=contexts, seconds=time.perf_counter() - started)

        return cached(self.folder(task, user) / "predictions" / f"{method}-{digest}.json", compute, Answers)
