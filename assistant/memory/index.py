"""Snippet vectors: computing the missing ones, and an in-memory matrix to search them.

Vectors are stored in the database as little-endian float32 BLOBs keyed by the text's hash.
A process keeps one matrix per database and brings it up to date only when the database's
change counters moved (appends are read incrementally, edits and deletions reload).

Reading 100k vectors out of SQLite takes about 1.7 s, once per process: too slow for a cold
`myna ask`. So a large matrix is also kept in a snapshot file beside the database (myna.vectors,
private like it), stamped with the database's identity and counters: a new process reads the
file in one go and the rows appended since from SQLite. Any deletion removes the snapshot
(store.purge), so a deleted memory's vector does not outlive it there either.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import numpy as np
import sqlite_utils

from assistant import embeddings
from assistant.atomic import atomic_open
from assistant.store.transaction import transaction

Progress = Callable[[int, int], None]  # (done, total)

CHUNK = 64
# Below this many vectors SQLite is fast enough (10k: about 0.1 s) and no snapshot is kept.
SNAPSHOT_MIN = 5_000
SNAPSHOT_MAGIC = b"MYNAVEC1"


def encoder() -> Callable[[list[str]], np.ndarray]:
    """What turns texts into vectors: one embedder for a query and for an import of thousands
    (ONNX Runtime is the fastest for both: `python -m bench memory`)."""
    return embeddings.embedder().embed


def embed_texts(texts: list[str], on_progress: Progress | None = None) -> np.ndarray:
    encode = encoder()
    out = np.empty((len(texts), embeddings.DIM), dtype=np.float32)
    for start in range(0, len(texts), CHUNK * 4):
        out[start : start + CHUNK * 4] = encode(texts[start : start + CHUNK * 4])
        if on_progress:
            on_progress(min(start + CHUNK * 4, len(texts)), len(texts))
    return out


def missing(db: sqlite_utils.Database) -> list[tuple[str, str]]:
    """(hash, text) of every distinct snippet text that has no vector yet."""
    return list(
        db.execute(
            """SELECT s.content_hash, MIN(s.text) FROM snippets s
           LEFT JOIN embeddings e ON e.content_hash = s.content_hash
           WHERE e.content_hash IS NULL GROUP BY s.content_hash"""
        )
    )


def store(db: sqlite_utils.Database, hashes: list[str], vectors: np.ndarray) -> None:
    db.conn.executemany(
        "INSERT OR REPLACE INTO embeddings (content_hash, model, vector) VALUES (?, ?, ?)",
        [(h, embeddings.MODEL_NAME, v.astype("<f4").tobytes()) for h, v in zip(hashes, vectors)],
    )


def refresh(db: sqlite_utils.Database, on_progress: Progress | None = None) -> int:
    """Compute the vectors that are missing (new chat messages, say); returns how many."""
    todo = missing(db)
    if not todo:
        return 0
    vectors = embed_texts([text for _, text in todo], on_progress)
    with transaction(db):
        store(db, [h for h, _ in todo], vectors)
    return len(todo)


class VectorIndex:
    """All snippet vectors of one database as one matrix; cosine = dot (vectors are unit)."""

    def __init__(self) -> None:
        self.ids = np.zeros(0, dtype=np.int64)
        self.matrix = np.zeros((0, embeddings.DIM), dtype=np.float32)
        self.counters: tuple[int, int] | None = None
        self.refreshed: tuple[int, int] | None = None  # counters when missing vectors were last computed
        self.saved_rows = 0  # rows in the snapshot file as this process last saw it
        self.lock = threading.Lock()

    def refresh(self, db: sqlite_utils.Database) -> None:
        """Embed snippets that have no vector yet; only looks when the store changed."""
        counters = _counters(db)
        if counters != self.refreshed:
            refresh(db)
            self.refreshed = counters

    def sync(self, db: sqlite_utils.Database) -> None:
        counters = _counters(db)
        with self.lock:
            if counters == self.counters:
                return
            if self.counters is None:
                self._restore(db, counters)
                if counters == self.counters:
                    return
            if self.counters is not None and counters[1] == self.counters[1]:
                self._append(db)  # only new snippets since last time
                if self._complete(db):
                    self.counters = counters
                    if len(self.ids) >= self.saved_rows * 1.2:
                        self._save(db)
                    return
            self._load(db, "")
            self.counters = counters
            self._save(db)

    def search(self, query: np.ndarray, n: int) -> list[tuple[int, float]]:
        with self.lock:
            if not len(self.ids):
                return []
            scores = self.matrix @ query.astype(np.float32)
            n = min(n, len(scores))
            top = np.argpartition(-scores, n - 1)[:n]
            top = top[np.argsort(-scores[top])]
            return [(int(self.ids[i]), float(scores[i])) for i in top]

    def cosines(self, query: np.ndarray, ids: list[int]) -> dict[int, float]:
        """Cosine similarity of the query with each of these snippets (those with a vector)."""
        with self.lock:
            if not len(self.ids) or not ids:
                return {}
            wanted = np.asarray(ids, dtype=np.int64)
            rows = np.searchsorted(self.ids, wanted)  # ids are kept in ascending order
            rows = np.minimum(rows, len(self.ids) - 1)
            found = self.ids[rows] == wanted
            scores = self.matrix[rows[found]] @ query.astype(np.float32)
            return {int(i): float(v) for i, v in zip(wanted[found], scores)}

    def _append(self, db: sqlite_utils.Database) -> None:
        last = int(self.ids[-1]) if len(self.ids) else 0
        self._load(db, f"WHERE s.id > {last}", append=True)

    def _complete(self, db: sqlite_utils.Database) -> bool:
        stored = db.execute(
            "SELECT COUNT(*) FROM snippets s JOIN embeddings e ON e.content_hash = s.content_hash"
        ).fetchone()[0]
        return stored == len(self.ids)

    def _load(self, db: sqlite_utils.Database, where: str, append: bool = False) -> None:
        rows = db.execute(
            f"""SELECT s.id, e.vector FROM snippets s JOIN embeddings e ON e.content_hash = s.content_hash
                {where} ORDER BY s.id"""
        ).fetchall()
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(row[1] for row in rows), dtype="<f4").reshape(len(rows), embeddings.DIM)
        if append:
            self.ids = np.concatenate([self.ids, ids])
            self.matrix = np.concatenate([self.matrix, matrix])
        else:
            self.ids, self.matrix = ids, matrix.copy()

    def _restore(self, db: sqlite_utils.Database, counters: tuple[int, int]) -> None:
        """Start from the snapshot if it belongs to this database and no edit or deletion
        happened since it was written (appends are read after it)."""
        path = snapshot_path(db)
        if path is None:
            return
        try:
            with open(path, "rb") as handle:
                if handle.read(len(SNAPSHOT_MAGIC)) != SNAPSHOT_MAGIC:
                    return
                header = np.frombuffer(handle.read(40), dtype="<i8")
                if len(header) != 5:
                    return
                instance, appended, changed, rows, dim = (int(v) for v in header)
                if (
                    instance != _instance(db)
                    or changed != counters[1]
                    or appended > counters[0]
                    or dim != embeddings.DIM
                ):
                    return
                ids = np.fromfile(handle, dtype="<i8", count=rows)
                matrix = np.fromfile(handle, dtype="<f4", count=rows * dim)
        except OSError:
            return
        if len(ids) != rows or len(matrix) != rows * dim:
            return  # a short file: ignore it, the next full load replaces it
        self.ids, self.matrix = ids.astype(np.int64), matrix.reshape(rows, dim)
        self.counters = (appended, changed)
        self.saved_rows = rows

    def _save(self, db: sqlite_utils.Database) -> None:
        path = snapshot_path(db)
        if path is None:
            return
        if len(self.ids) < SNAPSHOT_MIN:
            path.unlink(missing_ok=True)
            self.saved_rows = 0
            return
        header = np.asarray([_instance(db), *self.counters, len(self.ids), embeddings.DIM], dtype="<i8")
        try:
            with atomic_open(path, "wb") as handle:
                handle.write(SNAPSHOT_MAGIC + header.tobytes())
                handle.write(self.ids.astype("<i8").tobytes())
                handle.write(np.ascontiguousarray(self.matrix, dtype="<f4").tobytes())
        except OSError:
            return  # a full disk costs the next process a slower start, nothing else
        self.saved_rows = len(self.ids)


def snapshot_path(db: sqlite_utils.Database) -> Path | None:
    """The snapshot file beside a database file; None for a database in memory."""
    name = _database_name(db)
    return Path(name).with_suffix(".vectors") if name else None


def _database_name(db: sqlite_utils.Database) -> str:
    return db.execute("PRAGMA database_list").fetchone()[2]


def drop_snapshot(db: sqlite_utils.Database) -> None:
    """Delete the snapshot (after a deletion: it may hold the deleted snippets' vectors)."""
    path = snapshot_path(db)
    if path is None:
        return
    path.unlink(missing_ok=True)
    index = _indexes.get(_database_name(db))
    if index is not None:
        index.saved_rows = 0


def _instance(db: sqlite_utils.Database) -> int:
    """The database's random identity: a snapshot of another database with the same
    counters (a deleted and recreated myna.db, say) must not be taken for this one's."""
    row = db.execute("SELECT value FROM memory_state WHERE key = 'instance'").fetchone()
    return int(row[0]) if row else 0


def _counters(db: sqlite_utils.Database) -> tuple[int, int]:
    values = dict(db.execute("SELECT key, value FROM memory_state"))
    return values["appended"], values["changed"]


_indexes: dict[str, VectorIndex] = {}
_indexes_lock = threading.Lock()


def index_for(db: sqlite_utils.Database) -> VectorIndex:
    """The process's index for this database file (shared by all its connections)."""
    with _indexes_lock:
        return _indexes.setdefault(_database_name(db), VectorIndex())
