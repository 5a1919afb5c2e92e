"""`myna hub build`: a hub of community adapters, one per author of a public corpus.

Each author's texts become training examples exactly as an imported LaMP profile would
(merger/data/examples.py), an adapter is trained on them, and the index records its checksum,
base model, shapes, data card and a profile vector (the mean embedding of the author's texts)
that lets a user's merge pick the authors closest to them. The index is rewritten after every
adapter, so an interrupted build continues where it stopped.

With `task_adapter` (the default), the build first trains a task adapter on the authors' texts
pooled together, folds it into the base model's weights, and trains every author's adapter on
top of that task-adapted base, as PriME's authors do: the author adapters then only have to
learn what sets each author apart. The task adapter is published in the hub beside them, and
each author's entry names it; a merge of them is applied on top of it.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from assistant.catalogue import ModelSpec
from assistant.errors import MynaError
from assistant.hashing import sha256_file
from merger.cluster import units as cluster
from merger.data.examples import Example, record_example, split
from merger.formats import gguf_lora
from merger.formats.base_model import Architecture
from merger.hub import client as hub
from merger.training import torch_model
from merger.training.train import TrainConfig, train

Progress = Callable[[str, int, int], None]  # (author, authors done, authors in all)


def author_examples(records: list[tuple[str, str | None, str]]) -> list[Example]:
    return [e for e in (record_example(kind, date, text) for kind, date, text in records) if e is not None]


def profile_vector(texts: list[str]) -> list[float]:
    from assistant.embeddings import embedder

    vectors = embedder().embed(texts[:256])
    mean = vectors.mean(axis=0)
    return [round(float(x), 6) for x in mean / max(np.linalg.norm(mean), 1e-12)]


def build(
    folder: Path,
    authors: dict[str, list[tuple[str, str | None, str]]],
    *,
    base,
    arch: Architecture,
    system: str,
    config: TrainConfig,
    per_author: int = 64,
    license: str = "",
    corpus: str = "",
    hub_name: str = "Myna community hub",
    task_adapter: bool = True,
    on_progress: Progress | None = None,
    ray_address: str | None = None,
) -> list[hub.Entry]:
    """Train one adapter per author (their first `per_author` texts) into `folder`, on top of
    a task adapter trained on all of them (unless `task_adapter` is False). Each adapter is a
    unit of work (`train_author`): here, on `base`, or with `ray_address` as a Ray task on
    that cluster (merger/cluster/units.py), each worker loading the base model itself."""
    folder = Path(folder)
    (folder / "adapters").mkdir(parents=True, exist_ok=True)
    entries = _existing(folder)
    examples = {}
    for author, records in sorted(authors.items()):
        if author == TASK_ADAPTER:
            raise MynaError(f"An author cannot be called '{TASK_ADAPTER}': that is the task adapter's name in a hub.")
        examples[author] = author_examples(records)[:per_author]
        if len(examples[author]) < 8:
            raise MynaError(
                f"'{author}' has {len(examples[author])} usable texts; a community adapter needs at least 8."
            )
    steps = len(authors) + task_adapter
    done = 0

    def job(name: str, texts: list[Example], kind: str = "community", below: str | None = None) -> AuthorJob:
        return AuthorJob(folder, name, texts, base.spec, arch, system, config, license, corpus, kind, below)

    def finished(_number: int, entry: hub.Entry) -> None:
        nonlocal done
        entries[entry.name] = entry
        hub.write_index(folder, hub_name, list(entries.values()))  # after each: a stopped build resumes
        done += 1
        if on_progress:
            on_progress(entry.name, done, steps)

    _bases[base.fingerprint] = base  # units run here train on the caller's model
    try:
        below = None
        if task_adapter:
            if on_progress:
                on_progress(TASK_ADAPTER, 0, steps)
            # Round-robin, so every author is in it, and at most four authors' worth: the task
            # adapter learns the task's form, which needs no more.
            pooled = [e for texts in zip(*examples.values()) for e in texts][: POOLED_AUTHORS * per_author]
            built = entries.get(TASK_ADAPTER)
            if built is None or not (folder / built.file).is_file():
                entries = {}  # adapters trained on top of another task adapter are trained again
                cluster.run(
                    train_author, [job(TASK_ADAPTER, pooled, "task")], ray_address=ray_address, on_done=finished
                )
            else:
                done += 1
            below = TASK_ADAPTER
        todo = []
        for author in sorted(authors):
            entry = entries.get(author)
            if entry and (folder / entry.file).is_file() and entry.task_adapter == below:
                done += 1  # built before an interruption
            else:
                todo.append(job(author, examples[author], below=below))
        if on_progress:
            on_progress(todo[0].name if todo else "", done, steps)
        cluster.run(train_author, todo, ray_address=ray_address, on_done=finished)
    finally:
        _bases.pop(base.fingerprint, None)
    if on_progress:
        on_progress("", steps, steps)
    return list(entries.values())


TASK_ADAPTER = "task-adapter"  # its name in a hub (authors' names are never this)
POOLED_AUTHORS = 4  # the task adapter's examples: this many authors' worth, from all of them


@dataclass(frozen=True)
class AuthorJob:
    """One adapter of a hub to train, as plain data (it travels to a Ray worker)."""

    folder: Path
    name: str
    examples: list[Example]
    spec: ModelSpec
    arch: Architecture
    system: str
    config: TrainConfig
    license: str
    corpus: str
    kind: str = "community"  # or "task": the hub's task adapter
    task_adapter: str | None = None  # the hub's task adapter this one is trained on top of


# The base model of each unit run in this process: the caller's (build registers it), or, in a
# Ray worker, loaded once by the worker's first unit and kept for its next ones.
_bases: dict[str, object] = {}


def train_author(job: AuthorJob) -> hub.Entry:
    """Train one adapter of the hub and write it into the hub's folder (atomically); its entry
    for the index. With `task_adapter`, on the base model with that adapter folded in, and the
    base model given back as it was."""
    base = _bases.get(job.arch.fingerprint)  # the same as the base model's (catalogue.fingerprint)
    if base is None:  # torch computes with the threads the task was given (engine.default_threads)
        base = _bases[job.arch.fingerprint] = torch_model.load(job.spec)
    task = gguf_lora.read(job.folder / "adapters" / f"{job.task_adapter}.gguf", job.arch) if job.task_adapter else None
    if task is not None:
        torch_model.fold(base, task)  # the authors' adapters learn on the task-adapted base
    try:
        return _train_entry(job, base)
    finally:
        if task is not None:
            torch_model.fold(base, task, -1.0)  # the base model as it was


def _train_entry(job: AuthorJob, base) -> hub.Entry:
    """Train an adapter on the job's examples, write it into the hub and describe it."""
    name, examples, config = job.name, job.examples, job.config
    with tempfile.TemporaryDirectory(prefix="myna-hub-") as workdir:  # checkpoints, removed when done
        result = train(
            base,
            split(examples, held_out_fraction=0.0),
            config,
            system=job.system,
            workdir=Path(workdir),
            min_examples=8,
        )
    target = job.folder / "adapters" / f"{name}.gguf"
    result.lora.metadata = {"author": name}
    gguf_lora.write(result.lora, target, job.arch)
    dates = sorted(e.date for e in examples if e.date)
    if job.kind == "task":
        description = f"The task adapter: trained on {len(examples)} texts of all the hub's authors ({job.corpus})."
    else:
        description = f"Writes like {name}: trained on {len(examples)} of its public texts ({job.corpus})."
        if job.task_adapter:
            description += f" Applied on top of '{job.task_adapter}'."
    return hub.Entry(
        name=name,
        description=description,
        file=f"adapters/{name}.gguf",
        sha256=sha256_file(target),
        size=target.stat().st_size,
        base_fingerprint=job.arch.fingerprint,
        rank=result.lora.rank,
        alpha=result.lora.alpha,
        targets=result.lora.modules(),
        license=job.license,
        data_card={
            "author": name if job.kind == "community" else None,
            "corpus": job.corpus,
            "examples": len(examples),
            "by_task": sorted({e.origin for e in examples}),
            "first_date": dates[0] if dates else None,
            "last_date": dates[-1] if dates else None,
            "training": {k: v for k, v in result.config.items() if k != "checkpoint_every"},
            "final_train_loss": result.losses[-1],
            "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
        profile_vector=profile_vector([e.output for e in examples]),
        kind=job.kind,
        task_adapter=job.task_adapter,
    )


def _existing(folder: Path) -> dict[str, hub.Entry]:
    try:
        data = json.loads((folder / hub.INDEX).read_text())
        return {item["name"]: hub.Entry(**item) for item in data["adapters"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}
