"""Importing files into memory: read, split, embed, store; resumable and idempotent.

A file's content hash identifies it: importing the same content again adds nothing. Snippets
are stored in batches, each batch in one transaction with its vectors, so an interrupted
import keeps what it finished and the next run continues from there. A file whose content
changed replaces its earlier version once the new one is complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import sqlite_utils

from assistant.errors import MynaError
from assistant.hashing import text_hash
from assistant.memory import ann, chunking, keywords, readers
from assistant.memory import index as vectors
from assistant.memory.store import purge
from assistant.store.conversations import now
from assistant.store.transaction import transaction

BATCH = 128
Progress = Callable[[int, int, str], None]  # (snippets done, snippets to do, current file)


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    snippets: int = 0
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class _Job:
    document: readers.Document
    source_id: int
    todo: list[tuple[int, int, readers.Record, str]]  # (position, record number, record, snippet text)
    total: int


def import_paths(
    db: sqlite_utils.Database,
    paths: list[Path],
    *,
    max_mb: float = readers.DEFAULT_MAX_MB,
    on_progress: Progress | None = None,
) -> ImportReport:
    """Import files and folders; files that cannot be read are reported, the rest imported."""
    report = ImportReport()
    files, skipped = readers.discover(paths)
    report.notes.extend(skipped)
    jobs = []
    for path in files:
        try:
            document = readers.read(path, max_mb=max_mb)
        except MynaError as exc:
            report.errors.append(str(exc))
            continue
        report.notes.extend(document.notes)
        twin = next((job.document.path for job in jobs if job.document.content_hash == document.content_hash), None)
        if twin:  # the same text twice in one import: one source holds it
            report.notes.append(f"{path} has the same content as {twin}; it was imported once.")
            continue
        job = _plan(db, document, report)
        if job:
            jobs.append(job)
    total = sum(len(job.todo) for job in jobs)
    encode = vectors.encoder() if total else None
    done = 0
    for job in jobs:
        for start in range(0, len(job.todo), BATCH):
            batch = job.todo[start : start + BATCH]
            _store_batch(db, job, batch, encode)
            done += len(batch)
            report.snippets += len(batch)
            if on_progress:
                on_progress(done, total, job.document.path.name)
        _finish(db, job, report)
    if total:
        keywords.update(db)  # a large memory's BM25 index, rebuilt when much of it is new
        ann.update(db)  # and its approximate vector index, likewise
    return report


def _plan(db: sqlite_utils.Database, document: readers.Document, report: ImportReport) -> _Job | None:
    name = str(document.path)
    row = db.execute("SELECT id, status FROM sources WHERE content_hash = ?", (document.content_hash,)).fetchone()
    if row and row[1] == "complete":
        report.unchanged.append(name)
        return None
    pieces = [
        (number, record, text) for number, record in enumerate(document.records) for text in chunking.split(record.text)
    ]
    if not pieces:
        report.notes.append(f"{name} holds no text; nothing imported from it.")
        return None
    if row:
        source_id = row[0]  # an interrupted import of this content: continue it
    else:
        with transaction(db):
            source_id = db.execute(
                "INSERT INTO sources (kind, location, title, content_hash, imported_at) VALUES (?, ?, ?, ?, ?)",
                (document.kind, name, document.title, document.content_hash, now()),
            ).lastrowid
    stored = {r[0] for r in db.execute("SELECT position FROM snippets WHERE source_id = ?", (source_id,))}
    todo = [(position, *piece) for position, piece in enumerate(pieces) if position not in stored]
    return _Job(document, source_id, todo, len(pieces))


def _store_batch(db, job: _Job, batch, encode) -> None:
    hashes = [text_hash(text) for *_, text in batch]
    marks = ",".join("?" * len(hashes))
    known = {r[0] for r in db.execute(f"SELECT content_hash FROM embeddings WHERE content_hash IN ({marks})", hashes)}
    fresh = {h: text for h, (*_, text) in zip(hashes, batch) if h not in known}
    new_vectors = encode(list(fresh.values())) if fresh else None
    stamp = now()
    with transaction(db):  # the batch's snippets and their vectors land together, or not at all
        db.conn.executemany(
            """INSERT INTO snippets (source_id, position, record, kind, text, date, content_hash, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                (job.source_id, position, number, record.kind, text, record.date, digest, stamp)
                for (position, number, record, text), digest in zip(batch, hashes)
            ],
        )
        if fresh:
            vectors.store(db, list(fresh), new_vectors)


def _finish(db, job: _Job, report: ImportReport) -> None:
    name = str(job.document.path)
    older = [
        r[0]
        for r in db.execute(
            "SELECT id FROM sources WHERE location = ? AND id != ? AND status = 'complete'", (name, job.source_id)
        )
    ]
    with transaction(db):
        db.execute("UPDATE sources SET status = 'complete', snippet_count = ? WHERE id = ?", (job.total, job.source_id))
        for source_id in older:
            db.execute("DELETE FROM sources WHERE id = ?", (source_id,))
    if older:
        purge(db)
        report.replaced.append(name)
    else:
        report.imported.append(name)
