"""Personalization run records, and the lock that lets only one run at a time."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import sqlite_utils

from assistant import paths, processes
from assistant.errors import MynaError
from assistant.store.conversations import now
from assistant.store.transaction import transaction

FINISHED = ("published", "no-improvement", "skipped", "cancelled", "failed", "interrupted")


@dataclass(frozen=True)
class Run:
    id: int
    started_at: str
    finished_at: str | None
    status: str
    pid: int | None
    phase: str
    done: int
    total: int
    adapters: list[str]
    weights: list[float]
    fitness_before: float | None
    fitness_after: float | None
    similarity_before: float | None
    similarity_after: float | None
    seconds: float | None
    published: str | None
    message: str
    config: dict
    phase_seconds: dict[str, float] = field(default_factory=dict)  # in the order the phases began
    # What the next run would start from if nothing changed (`inputs`): None for runs that
    # did not finish a search, and for those recorded before m011; a run skipped because
    # nothing changed keeps the digest it matched.
    inputs: str | None = None

    @property
    def nothing_changed(self) -> bool:
        """Skipped because nothing changed since the last search (`--again` runs anyway)."""
        return self.status == "skipped" and self.inputs is not None

    def figures(self) -> str:
        """Its fitness and its privacy figure (similarity to the sharers: by the run's privacy
        term, the closest sharer's, the mean over them, or that mean beyond the model without
        them), before and after; "" if it has none."""
        parts = []
        if self.fitness_before is not None and self.fitness_after is not None:
            parts.append(f"fitness {self.fitness_before:.3f} → {self.fitness_after:.3f}")
        if self.similarity_before is not None and self.similarity_after is not None:
            privacy = self.config.get("privacy", "closest")
            if privacy == "likelihood":
                label = "likelier sharers' answers"
            elif privacy == "weights":
                label = "weight on the sharers"
            else:
                term = {"closest": "the closest sharer", "excess": "the sharers beyond the base"}.get(
                    privacy, "the sharers"
                )
                label = f"similarity to {term}"
            parts.append(f"{label} {self.similarity_before:.2f} → {self.similarity_after:.2f}")
        return ", ".join(parts)

    def describe(self) -> str:
        """The run as `myna personalize --last` and the personalize screen (F4) show it."""
        line = f"{self.started_at[:16].replace('T', ' ')}  {self.status}"
        if self.figures():
            line += f"  {self.figures()}"
        if self.seconds:
            line += f"  ({self.seconds / 60:.1f} min)"
        lines = [line]
        if self.adapters:
            lines.append("merged " + ", ".join(f"{a} ×{w:+.2f}" for a, w in zip(self.adapters, self.weights)))
        if self.status == "running":
            lines.append(f"{self.phase} {self.done}/{self.total}")
        elif self.message:
            lines.append(self.message)
        if self.search():
            lines.append(f"search: {self.search()}")
        if self.where_the_time_went():
            lines.append(f"time: {self.where_the_time_went()}")
        return "\n    ".join(lines)

    def search(self) -> str:
        """The options that sized its search (PersonalizeConfig: the one place they are set),
        "" for a run that recorded none."""
        if "budget" not in self.config:
            return ""
        own = ", then your own adapter on top" if self.config.get("train_own") else ""
        if own and self.config.get("own_alone"):
            own += " and alone, keeping whichever answers better"
        checked = ", judged with your memory" if self.config.get("check_memory") else ""
        return (
            f"{self.config['budget']} candidates from up to {self.config.get('max_adapters')} community "
            f"adapters, privacy weight {self.config.get('alpha')}{own}{checked}"
        )

    def where_the_time_went(self) -> str:
        """Seconds per phase of a finished run ("" while it runs, and for runs before m010)."""
        return "" if self.status == "running" else where_the_time_went(self.phase_seconds)


def where_the_time_went(phase_seconds: dict[str, float]) -> str:
    """Seconds per phase, longest first ("" for a run recorded without them)."""
    ranked = sorted(phase_seconds.items(), key=lambda item: -item[1])
    return ", ".join(f"{phase} {seconds:.0f} s" for phase, seconds in ranked if seconds >= 0.5)


class PhaseClock:
    """Seconds spent in each phase of a run; a phase entered again adds to its total."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = clock
        self._phase, self._since = None, clock()

    def enter(self, phase: str) -> None:
        now = self._clock()
        if self._phase is not None:
            self.seconds[self._phase] = self.seconds.get(self._phase, 0.0) + now - self._since
        self._phase, self._since = phase, now

    def totals(self) -> dict[str, float]:
        """The seconds so far, the current phase's included (it goes on counting)."""
        if self._phase is not None:
            self.enter(self._phase)
        return {phase: round(seconds, 1) for phase, seconds in self.seconds.items()}


_COLUMNS = """id, started_at, finished_at, status, pid, phase, done, total, adapters, weights, fitness_before,
    fitness_after, similarity_before, similarity_after, seconds, published, message, config, phase_seconds, inputs"""


def _run(row) -> Run:
    values = list(row)
    for index in (8, 9, 17, 18):  # adapters, weights, config, phase_seconds: JSON
        values[index] = json.loads(values[index])
    return Run(*values)


def start(db: sqlite_utils.Database, config: dict) -> int:
    with transaction(db):
        return db.execute(
            "INSERT INTO personalization_runs (started_at, status, pid, config) VALUES (?, 'running', ?, ?)",
            (now(), os.getpid(), json.dumps(config)),
        ).lastrowid


def progress(db: sqlite_utils.Database, run_id: int, phase: str, done: int, total: int) -> None:
    with transaction(db):
        db.execute(
            "UPDATE personalization_runs SET phase = ?, done = ?, total = ? WHERE id = ?", (phase, done, total, run_id)
        )


def finish(db: sqlite_utils.Database, run_id: int, status: str, **fields) -> None:
    if status not in FINISHED:
        raise ValueError(status)
    for key in ("adapters", "weights", "phase_seconds"):
        if key in fields:
            fields[key] = json.dumps(fields[key])
    names = ", ".join(f"{key} = ?" for key in fields)
    with transaction(db):
        db.execute(
            f"UPDATE personalization_runs SET status = ?, finished_at = ?, pid = NULL{', ' + names if names else ''} WHERE id = ?",
            (status, now(), *fields.values(), run_id),
        )


def inputs(*parts: str) -> str:
    """One digest of everything a run's result depends on, given as text parts in order."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part.encode()).digest())
    return digest.hexdigest()


def last_search(db: sqlite_utils.Database) -> Run | None:
    """The last run that finished a search (and published its result or kept the adapter)."""
    row = db.execute(
        f"SELECT {_COLUMNS} FROM personalization_runs WHERE status IN ('published', 'no-improvement') "
        "ORDER BY id DESC LIMIT 1"
    ).fetchone()
    return _run(row) if row else None


def last_published(db: sqlite_utils.Database) -> Run | None:
    """The last run that published an adapter."""
    row = db.execute(
        f"SELECT {_COLUMNS} FROM personalization_runs WHERE status = 'published' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    return _run(row) if row else None


def same_as_last(db: sqlite_utils.Database, digest: str) -> Run | None:
    """The last run that finished a search, if it ended where a run from `digest` would
    start (the same history, community adapters, options, and the adapter it left active):
    a seeded run on the same inputs finds the same result, so doing it again only costs time."""
    found = last_search(db)
    return found if found is not None and found.inputs == digest else None


def skipped(db: sqlite_utils.Database, reason: str) -> int:
    run_id = start(db, {})
    finish(db, run_id, "skipped", message=reason)
    return run_id


def recent(db: sqlite_utils.Database, limit: int = 10) -> list[Run]:
    """The last runs, newest first, as recorded (see `mark_interrupted` for runs whose process died)."""
    return [
        _run(row)
        for row in db.execute(f"SELECT {_COLUMNS} FROM personalization_runs ORDER BY id DESC LIMIT ?", (limit,))
    ]


def latest(db: sqlite_utils.Database) -> Run | None:
    found = recent(db, 1)
    return found[0] if found else None


def mark_interrupted(db: sqlite_utils.Database, *, holding_lock: bool = False) -> None:
    """Record every run whose process died (killed, crashed) as interrupted; writes only when
    it finds one. With the lock held no earlier run can be alive, whatever its (possibly
    reused) process id says."""
    for run_id, pid in db.execute("SELECT id, pid FROM personalization_runs WHERE status = 'running'").fetchall():
        if holding_lock or not processes.alive(pid):
            finish(db, run_id, "interrupted", message="the run's process ended before it finished")


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """Hold the personalization lock; MynaError when another run holds it. The kernel drops
    the lock when its process dies, so a killed run never blocks the next one."""
    path = paths.data_dir() / "personalize.lock"
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise MynaError(f"Another personalization run is in progress ({holder}); wait for it to finish.") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, started {now()[:19]}")
        handle.flush()
        yield
    finally:
        handle.seek(0)
        handle.truncate()
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
