"""Myna's nightly run, as shipped: for one user, what their assistant answers with the next
morning.

The user's data folder is made as a person's would be: their store (their profile imported
through `myna import`'s code path), the other users' own adapters offered on a hub and pulled
through `myna adapters pull`'s code (checksums, shapes, base model), and then the very function
`myna personalize` calls, with the shipped options and the user's settings: the cold-start
threshold, the pool, the search, their own adapter on top, the check in llama.cpp and the
publish gate. Whatever is active afterwards (the published adapter, or none) answers with the
default retrieval; a user the run skipped or refused is answered as RAG alone would answer them.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from bench.lamp.records import Nightly

HOME = "home"  # the user's data folder for the run, under their benchmark folder ("nightly-home")


def stem(model: str) -> str:
    """What a nightly model's files are called in the user's benchmark folder: "nightly" as
    shipped, "nightly-budget=12" with other options (bench.lamp.plan.nightly_model)."""
    return model.replace(":", "-").replace(",", "-")


def config(model: str):
    """The options the nightly model `model` runs with: PersonalizeConfig's defaults, with
    the variant's own; options the run would refuse are refused in one sentence now."""
    from dataclasses import replace

    from assistant.errors import MynaError
    from bench.lamp.plan import nightly_options
    from merger.nightly.config import PersonalizeConfig

    chosen = replace(PersonalizeConfig(), **nightly_options(model))
    try:
        chosen.check()
    except MynaError as refused:
        raise SystemExit(f"--nightly-variant {model.partition(':')[2]}: {refused}") from None
    return chosen


def hub_name(user: str) -> str:
    """A user's adapter's name on the benchmark's hub (adapter names start with a letter or digit)."""
    return f"user-{user}"


def offer(space, task: str, adapters: dict[str, str], stores: dict) -> Path:
    """A hub (merger.hub's index format) offering each user's own adapter, with their author
    profile (the mean embedding of their memory, as `myna hub build` describes an author);
    written once per task, and again only if the set of adapters changed."""
    from assistant.atomic import atomic_path
    from assistant.hashing import sha256_file
    from merger.formats import gguf_lora
    from merger.hub import client
    from merger.search import selection

    folder = space.work / task / "hub"
    try:
        offered = {entry.name for entry in client.open_hub(str(folder)).entries}
    except Exception:  # noqa: BLE001 - no hub yet, or one left half-written by a killed run
        offered = None
    if offered == {hub_name(u) for u in adapters}:
        return folder
    entries = []
    for user, path in sorted(adapters.items()):
        target = folder / "adapters" / f"{hub_name(user)}.gguf"
        # Whole or not at all: on Ray every user's nightly unit offers the same hub at once, and
        # one read another's half-copied file (8 December). The copies are alike, so the last wins.
        with atomic_path(target) as partial:
            shutil.copyfile(path, partial)
        lora = gguf_lora.read(target, space.arch)
        vector = selection.embed_user(stores[user])
        entries.append(
            client.Entry(
                name=hub_name(user),
                description=f"Writes like {task} user {user}.",
                file=f"adapters/{target.name}",
                sha256=sha256_file(target),
                size=target.stat().st_size,
                base_fingerprint=space.arch.fingerprint,
                rank=lora.rank,
                alpha=lora.alpha,
                targets=lora.modules(),
                license="benchmark",
                data_card={"author": user},
                profile_vector=[round(float(x), 6) for x in vector] if vector is not None else None,
            )
        )
    client.write_index(folder, f"{task} users", entries)
    return folder


@contextmanager
def data_folder(home: Path, torch_base: Path):
    """MYNA_HOME pointed at a new `home` for the run, its cache linking the converted torch
    base `torch_base` of the benchmark's own (not made again per user), and back afterwards."""
    before = os.environ.get("MYNA_HOME")
    (home / "cache").mkdir(parents=True)
    (home / "cache" / torch_base.name).symlink_to(torch_base, target_is_directory=True)
    os.environ["MYNA_HOME"] = str(home)
    try:
        yield home
    finally:
        if before is None:
            os.environ.pop("MYNA_HOME", None)
        else:
            os.environ["MYNA_HOME"] = before


def as_shipped(space, task: str, user: str, db, hub: Path, others: list[str], model: str = "nightly") -> Nightly:
    """The user's nightly run in a data folder of their own (made afresh: a stage that was
    stopped half-way starts again), with the adapters of `others` pulled from `hub`; with the
    shipped options, or a variant's (`model`: "nightly:budget=12")."""
    from assistant import adapters, paths
    from assistant import settings as user_settings
    from assistant.errors import MynaError
    from assistant.store import open_database
    from merger.hub import client
    from merger.nightly.personalize import personalize
    from merger.training import torch_model

    folder = space.folder(task, user)
    made = space.examples(db)
    examples = len(made.train) + len(made.held_out)
    options = config(model)
    home = folder / f"{stem(model)}-{HOME}"
    shutil.rmtree(home, ignore_errors=True)
    with data_folder(home, torch_model.built_cache(space.spec)):
        target = sqlite3.connect(paths.database_path())
        with target:
            db.conn.backup(target)  # their store, as `myna import` left it
        target.close()
        mine = open_database(paths.database_path())
        found = client.open_hub(str(hub))
        for name in others:
            client.pull(mine, found, hub_name(name), space.arch)
        try:
            outcome = personalize(mine, user_settings.load(mine), options)
        except MynaError as stopped:  # what the user would be told, e.g. too little held out to score on
            outcome = None
            message = str(stopped)
        active = adapters.active(mine)
        path = None
        if active is not None:
            path = folder / f"{stem(model)}.gguf"
            shutil.copyfile(active.gguf, path)
        mine.close()
    return Nightly(
        path=str(path) if path else None,
        examples=examples,
        bytes=path.stat().st_size if path else 0,
        config=asdict(options),
        **(_outcome(outcome) if outcome else {"status": "failed", "message": message}),
    )


def _outcome(outcome) -> dict:
    """What the record keeps of a run's outcome (merger.nightly.personalize.Outcome)."""
    kept = ("seconds", "status", "message", "fitness_before", "fitness_after", "adapters", "weights", "phase_seconds")
    return {name: getattr(outcome, name) for name in kept}
