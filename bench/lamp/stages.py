"""One task's per-user stages, in the order they depend on each other: each user's own adapter
(OPPU), their merges of the others' adapters, the adapters trained with memory or on top of a
merge, and every method's answers.

Each stage of one user is a unit of work (merger.cluster.units): run here one after another,
or with `--ray ADDRESS` as Ray tasks, which a worker rebuilds from plain data (`Unit`). Either
way a stage writes its result to the run's cached stage files (bench.lamp.cache) and nothing
else, so the driver then reads the same records it would have computed: a cluster run and a
local run leave the same folder behind and resume the same way. A worker needs the checkout
and the results folder at the same paths as the driver (one machine, or a shared disk).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from bench.datasets import BUILDERS, Dataset, load
from bench.lamp.models import UserModels
from bench.lamp.plan import NIGHTLY, TERM_FAMILY, Method, Plan, as_served, family_of, is_nightly
from bench.lamp.records import Answers
from bench.lamp.workspace import Workspace


def dataset_for(
    task: str, plan: Plan, work: Path, lamp: tuple[Path, Path] | None, sample: tuple[int, int] | None = None
) -> Dataset:
    """The task's questions: the LaMP pair given, or the plan's own; with `sample` (users,
    seed), a reproducible subset of their users."""
    dataset = _whole_dataset(task, plan, work, lamp)
    if plan.histories:
        dataset = dataset.with_histories(plan.histories)
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


class TaskRun:
    """What one task's stages made so far, user by user, and the stages themselves."""

    def __init__(self, space: Workspace, task: str, dataset: Dataset, wanted: dict[str, Method]) -> None:
        self.space, self.plan, self.task, self.dataset = space, space.plan, task, dataset
        self.users = dataset.users()
        self.models = {user: UserModels() for user in self.users}
        self._stores: dict[str, object] = {}
        self.needs = {spec.model for spec in wanted.values()} - {None}
        # Merges pool the other users' own adapters; training on top of PriME needs the merge.
        self.need_merges = any(m not in ("oppu", "oppu-memory") and not is_nightly(m) for m in self.needs)
        self.table: dict[str, Method] = {}  # the rows answered; set once the merges are known
        self.attack = False  # whether the membership attack runs (run.py says, once the merges are known)

    def store(self, user: str):
        """The user's memory, imported from their profile the first time."""
        if user not in self._stores:
            self._stores[user] = self.space.store(self.task, user, self.dataset.of(user))
        return self._stores[user]

    @property
    def stores(self) -> dict:
        return {user: self.store(user) for user in self.users}

    @property
    def trained(self) -> list[str]:
        """The users with an adapter of their own (the others had too little history)."""
        return [u for u in self.users if self.models[u].own]

    def users_of(self, stage: str) -> list[str]:
        """Whom a stage concerns in this run (none: the run does not need it)."""
        if stage == "oppu":
            return self.users if self.needs else []
        if stage == "merges":
            return self.users if self.need_merges else []
        if stage == "variants":
            return self.trained if self.plan.oppu_variants else []
        if stage == "nightly":
            return self.users if any(is_nightly(m) for m in self.needs) else []
        if stage == "attacks":
            return self.trained if self.attack else []  # a cold start has no adapter to attack
        return self.users

    # -- the stages of one user --------------------------------------------------------------------

    def oppu(self, user: str) -> None:
        self.models[user].oppu = self.space.train_oppu(self.task, user, self.store(user))

    def merges(self, user: str) -> None:
        """PriME's merges for the user (and the published fitness's, when the run has them)."""
        space, plan, task, models = self.space, self.plan, self.task, self.models
        pool = space.pool(task, user, self.stores, {v: models[v].own for v in self.trained if v != user})
        if not pool or not space.examples(self.store(user)).held_out:
            return  # no community to merge, or nothing of theirs to score a merge on
        alphas = plan.alphas if self.users.index(user) < plan.sweep_users else (0.0, plan.alpha)
        alphas = tuple(sorted(set(alphas) | {0.0, plan.alpha}))
        models[user].merges = space.merges(task, user, self.store(user), pool, alphas)
        for term in plan.published_terms if plan.published else ():
            family = TERM_FAMILY[term]
            if not any(family_of(model) == family for model in self.needs):
                continue
            few = space.pool(task, user, self.stores, pool, plan.published_pool)
            # At alpha 0 the term does not count: the published family's search is that one.
            searched = alphas if term == "mean" else tuple(a for a in alphas if a > 0)
            models[user].published[family] = space.merges(
                task, user, self.store(user), few, searched, f"-{family}{plan.published_pool}", False, privacy=term
            )

    def variants(self, user: str) -> None:
        """Their own adapter trained with memory, and trained on top of the penalized merge."""
        space, task, models = self.space, self.task, self.models
        if "oppu-memory" in self.needs:
            models[user].oppu_memory = space.train_oppu(task, user, self.store(user), "oppu-memory", memory=True)
        merged = models[user].merged().get(f"prime-a{self.plan.alpha:g}")
        if merged and "prime-oppu" in self.needs:
            models[user].prime_oppu = space.train_oppu(task, user, self.store(user), "prime-oppu", start=merged.path)

    def nightly(self, user: str) -> None:
        """`myna personalize` as shipped (and with each variant's options) in a data folder of
        their own, the other users' adapters offered to it on a hub (bench.lamp.nightly)."""
        from bench.lamp import nightly
        from bench.lamp.cache import cached
        from bench.lamp.records import Nightly

        for model in sorted(m for m in self.needs if is_nightly(m)):

            def compute(model=model) -> Nightly:
                hub = nightly.offer(self.space, self.task, {v: self.models[v].own for v in self.trained}, self.stores)
                others = sorted(v for v in self.trained if v != user)
                return nightly.as_shipped(self.space, self.task, user, self.store(user), hub, others, model)

            path = self.space.folder(self.task, user) / f"{nightly.stem(model)}.json"
            record = cached(path, compute, Nightly)
            if model == NIGHTLY:
                self.models[user].nightly = record
            else:
                self.models[user].nightly_variants[model] = record

    def answers(self, user: str) -> dict[str, Answers]:
        """Every row's answers to the user's questions."""
        found = {}
        for method, spec in self.table.items():
            record = self.models[user].record(spec.model)
            served = as_served(spec, record is not None)
            # A cold start is served what a row of the table already computes (the shipped
            # memory answer): the same cached answers, not a second generation of them.
            name = method if served == spec else next((m for m, s in self.table.items() if s == served), "cold start")
            found[method] = self.space.predict(
                self.task,
                user,
                self.dataset.of(user),
                name,
                self.store(user),
                record.path if record else None,
                served.rag,
                served.layout,
            )
        return found

    def attacks(self, user: str) -> dict:
        """Membership inference against their own adapter and their merges."""
        from bench.lamp import privacy

        return privacy.attack_user(self.space, self.task, self.dataset, self.stores, self.models, self.plan, user)


# -- units of work ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """One user's stage, as plain data a Ray worker rebuilds the run from."""

    plan: Plan
    work: str  # the run's cache folder
    lamp: tuple[str, str] | None
    sample: tuple[int, int] | None
    task: str
    wanted: tuple[str, ...]  # the methods the run was asked for (which models it needs)
    rows: tuple[str, ...]  # the methods answered (the `answers` stage's table; empty before it)
    stage: str
    user: str


# Each worker process keeps one run's workspace (engine and torch base, loaded once) and what it
# read of each task, for its next units.
_spaces: dict[tuple, Workspace] = {}
_runs: dict[tuple, TaskRun] = {}


def run_unit(unit: Unit) -> None:
    """One user's stage, its result written to the stage's file. What it builds on is read
    from the earlier stages' files (the driver runs each stage for every user before the next)."""
    from bench.lamp.plan import methods_for

    table = methods_for(unit.plan, True)
    key = (json.dumps(asdict(unit.plan), sort_keys=True), unit.work, unit.lamp, unit.sample, unit.task, unit.wanted)
    job = _runs.get(key)
    if job is None:
        space = _spaces.get(key[:2])
        if space is None:
            space = _spaces[key[:2]] = Workspace(unit.plan, Path(unit.work))
        lamp = tuple(Path(p) for p in unit.lamp) if unit.lamp else None
        dataset = dataset_for(unit.task, unit.plan, Path(unit.work), lamp, unit.sample)
        job = _runs[key] = TaskRun(space, unit.task, dataset, {row: table[row] for row in unit.wanted})
    job.table = {row: table[row] for row in unit.rows}
    if unit.stage != "oppu":
        for user in job.users_of("oppu"):
            job.oppu(user)  # the others' adapters too: a merge pools them
    if unit.stage not in ("oppu", "merges") and unit.user in job.users_of("merges"):
        job.merges(unit.user)
    if unit.stage == "answers" and unit.user in job.users_of("nightly"):
        job.nightly(unit.user)
    if unit.stage == "answers" and unit.user in job.users_of("variants"):
        job.variants(unit.user)
    getattr(job, unit.stage)(unit.user)


LABELS = {
    "oppu": "OPPU adapter",
    "merges": "merges",
    "variants": "OPPU trained with memory or on PriME",
    "nightly": "the nightly run (myna personalize)",
    "answers": "answers",
    "attacks": "membership inference",
}


def each(
    job: TaskRun,
    stage: str,
    on_stage: Callable[[str], None],
    ray_address: str | None = None,
    unit: Callable[[str, str], Unit] | None = None,
) -> dict:
    """A stage for every user it concerns, as {user: result}: computed here one by one; or with
    `ray_address`, first as Ray tasks (`unit(stage, user)`, as many at once as the cluster
    fits), whose results are then read here from the files they wrote."""
    users = job.users_of(stage)
    label = LABELS[stage]
    if ray_address and users:
        from merger.cluster import units as cluster

        on_stage(f"{job.task}: {label}, {len(users)} users on the Ray cluster")
        cluster.run(
            run_unit,
            [unit(stage, user) for user in users],
            ray_address=ray_address,
            on_done=lambda number, _: on_stage(f"{job.task}: {label} for {users[number]} done on the cluster"),
            env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])},  # bench/ runs from the checkout
        )
    found = {}
    for user in users:
        if not ray_address:
            on_stage(f"{job.task}: {label} for {user}")
        found[user] = getattr(job, stage)(user)
    return found
