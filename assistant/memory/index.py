"""Snippet vectors: computing the missing ones, and an in-memory matrix to search them.

Vectors are stored in the database as little-endian float32 BLOBs keyed by the text's hash.
A process keeps one matrix per database and brings it up to date only when the database's
change counters moved (appends are read incrementally, edits and deletions reload).

Reading 100k vectors out of SQLite takes about 1.7 s, once per process: too slow for a cold
`myna ask`. So a large matrix is also kept in a snapshot file beside the database (myna.vectors,
private like it), stamped with the database's identity and counters: a new process maps the
file's pages (no copy) and reads the rows appended since from SQLite. Any deletion removes the snapshot
(store.purge), so a deleted memory's vector does not outlive it there either.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import sqlite_utils

from assistant import embeddings
from assistant.atomic import atomic_open
from assistant.memory import beside
from assistant.store.transaction import transaction

Progress = Callable[[int, int], None]  # (done, total)

CHUNK = 64
# Below this many vectors SQLite is fast enough (10k: about 0.1 s) and no snapshot is kept.
SNAPSHOT_MIN = 5_000
SNAPSHOT_MAGIC = b"MYNAVEC2"


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


def missing(db: sqlite_utils.Database, after: int = 0) -> list[tuple[str, str]]:
    """(hash, text) of every distinct snippet text that has no vector yet, among the snippets
    with an id above `after`."""
    return list(
        db.execute(
            """SELECT s.content_hash, MIN(s.text) FROM snippets s
           LEFT JOIN embeddings e ON e.content_hash = s.content_hash
           WHERE e.content_hash IS NULL AND s.id > ? GROUP BY s.content_hash""",
            (after,),
        )
    )


def store(db: sqlite_utils.Database, hashes: list[str], vectors: np.ndarray) -> None:
    db.conn.executemany(
        "INSERT OR REPLACE INTO embeddings (content_hash, model, vector) VALUES (?, ?, ?)",
        [(h, embeddings.MODEL_NAME, v.astype("<f4").tobytes()) for h, v in zip(hashes, vectors)],
    )


def refresh(db: sqlite_utils.Database, on_progress: Progress | None = None, after: int = 0) -> int:
    """Compute the vectors that are missing (new chat messages, say) for snippets with an id
    above `after`; returns how many."""
    todo = missing(db, after)
    if not todo:
        return 0
    vectors = embed_texts([text for _, text in todo], on_progress)
    with transaction(db):
        store(db, [h for h, _ in todo], vectors)
    return len(todo)


class Approximate(Protocol):
    """An approximate index of the vectors of snippets up to `covered_through` (ann.AnnIndex),
    but for `others`."""

    covered_through: int
    others: np.ndarray

    def candidates(self, query: np.ndarray, n: int) -> np.ndarray: ...


def _no_rows() -> np.ndarray:
    return np.zeros((0, embeddings.DIM), dtype=np.float32)


class VectorIndex:
    """All snippet vectors of one database, in id order; cosine = dot (vectors are unit). The
    rows are the snapshot's (mapped from its file, read-only) followed by those read since
    (in a buffer with room to append, so a chat message's vector copies neither)."""

    def __init__(self) -> None:
        self.ids = np.zeros(0, dtype=np.int64)
        self._base = _no_rows()  # the snapshot's rows
        self.counters: tuple[int, int] | None = None
        self.refreshed: tuple[int, int] | None = None  # counters when missing vectors were last computed
        self.saved_rows = 0  # rows in the snapshot file as this process last saw it
        # Every snippet up to this id had a vector while the 'changed' counter was at
        # complete_changed: only newer ones need looking at (a scan of 100k takes ~80 ms).
        self.complete_through = 0
        self.complete_changed = -1
        self.lock = threading.Lock()
        self._spare = _no_rows()  # the rows after them, plus room

    @property
    def _tail(self) -> np.ndarray:
        """The rows read after the snapshot's."""
        return self._spare[: len(self.ids) - len(self._base)]

    @property
    def matrix(self) -> np.ndarray:
        """Every vector, one row per id: a copy only when rows follow a snapshot's."""
        tail = self._tail
        if not len(tail):
            return self._base
        return tail if not len(self._base) else np.concatenate([self._base, tail])

    def _scores(self, query: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """The query's dot product with every row, or with these rows, in their order."""
        base, tail = self._base, self._tail
        if rows is None:
            return np.concatenate([base @ query, tail @ query]) if len(tail) else base @ query
        scores = np.empty(len(rows), dtype=np.float32)
        inside = rows < len(base)
        scores[inside] = base[rows[inside]] @ query
        scores[~inside] = tail[rows[~inside] - len(base)] @ query
        return scores

    def refresh(self, db: sqlite_utils.Database) -> None:
        """Embed snippets that have no vector yet; only looks when the store changed."""
        counters = _counters(db)
        if counters == self.refreshed:
            return
        if self.counters is None:
            with self.lock:
                self._restore(db, counters)
        after = self.complete_through if self.complete_changed == counters[1] else 0
        top = db.execute("SELECT COALESCE(MAX(id), 0) FROM snippets").fetchone()[0]
        refresh(db, after=after)
        self.complete_through, self.complete_changed = top, counters[1]
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

    def search(self, query: np.ndarray, n: int, approx: Approximate | None = None) -> list[tuple[int, float]]:
        """The n snippets nearest the query, with exact cosines. With `approx` (ann.py) only
        its candidates, the snippets newer than it and those it leaves out are scored."""
        with self.lock:
            if not len(self.ids):
                return []
            query = query.astype(np.float32)
            if approx is None:
                ids, scores = self.ids, self._scores(query)
            else:
                tail = int(np.searchsorted(self.ids, approx.covered_through, side="right"))
                rows = np.concatenate(
                    [
                        self._rows_of(approx.candidates(query, n)),
                        np.arange(tail, len(self.ids)),
                        self._rows_of(approx.others),
                    ]
                )
                rows = np.unique(rows)
                ids, scores = self.ids[rows], self._scores(query, rows)
            n = min(n, len(scores))
            if n == 0:
                return []
            top = np.argpartition(-scores, n - 1)[:n]
            top = top[np.argsort(-scores[top])]
            return [(int(ids[i]), float(scores[i])) for i in top]

    def cosines(self, query: np.ndarray, ids: list[int]) -> dict[int, float]:
        """Cosine similarity of the query with each of these snippets (those with a vector)."""
        with self.lock:
            if not len(self.ids) or not ids:
                return {}
            rows = self._rows_of(np.asarray(ids, dtype=np.int64))
            scores = self._scores(query.astype(np.float32), rows)
            return {int(i): float(v) for i, v in zip(self.ids[rows], scores)}

    def _rows_of(self, ids: np.ndarray) -> np.ndarray:
        """The matrix rows of those of these snippet ids that have one."""
        if not len(ids) or not len(self.ids):
            return np.zeros(0, dtype=np.int64)
        rows = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)  # ids are kept ascending
        return rows[self.ids[rows] == ids]

    def _append(self, db: sqlite_utils.Database) -> None:
        last = int(self.ids[-1]) if len(self.ids) else 0
        self._load(db, f"WHERE s.id > {last}", append=True)

    def _complete(self, db: sqlite_utils.Database) -> bool:
        # refresh() has just given every snippet a vector, and nothing was deleted (the
        # 'changed' counter held): as many snippets as rows means the same snippets. Anything
        # else (a snippet written in between) costs a full reload, never a wrong index.
        return db.execute("SELECT COUNT(*) FROM snippets").fetchone()[0] == len(self.ids)

    def _load(self, db: sqlite_utils.Database, where: str, append: bool = False) -> None:
        rows = db.execute(
            f"""SELECT s.id, e.vector FROM snippets s JOIN embeddings e ON e.content_hash = s.content_hash
                {where} ORDER BY s.id"""
        ).fetchall()
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(row[1] for row in rows), dtype="<f4").reshape(len(rows), embeddings.DIM)
        if append:
            self._put(len(self.ids), matrix)
            self.ids = np.concatenate([self.ids, ids])
        else:
            self._base = self._spare = _no_rows()
            self._put(0, matrix)
            self.ids = ids

    def _put(self, start: int, rows: np.ndarray) -> None:
        """Write rows from row `start` on (after the snapshot's), growing the buffer by an eighth
        or more when full, so that appending a chat message's vector copies no large matrix."""
        at = start - len(self._base)
        end = at + len(rows)
        if end > len(self._spare):
            grown = np.empty((max(end + end // 8, 1024), embeddings.DIM), dtype=np.float32)
            grown[:at] = self._spare[:at]
            self._spare = grown
        self._spare[at:end] = rows

    def _restore(self, db: sqlite_utils.Database, counters: tuple[int, int]) -> None:
        """Start from the snapshot if it belongs to this database and no edit or deletion
        happened since it was written (appends are read after it)."""
        path = snapshot_path(db)
        if path is None:
            return
        read = _snapshot_for(path)
        if read is None:
            return
        instance, appended, changed, complete_through, ids, rows = read
        if instance != _instance(db) or changed != counters[1] or appended > counters[0]:
            return
        self.ids, self._base = ids, rows
        self._spare = _no_rows()
        self.counters = (appended, changed)
        self.saved_rows = len(ids)
        if complete_through:
            self.complete_through, self.complete_changed = complete_through, changed

    def _save(self, db: sqlite_utils.Database) -> None:
        path = snapshot_path(db)
        if path is None:
            return
        if len(self.ids) < SNAPSHOT_MIN:
            path.unlink(missing_ok=True)
            self.saved_rows = 0
            return
        complete = self.complete_through if self.complete_changed == self.counters[1] else 0
        header = np.asarray([_instance(db), *self.counters, len(self.ids), embeddings.DIM, complete], dtype="<i8")
        try:
            with atomic_open(path, "wb") as handle:
                handle.write(SNAPSHOT_MAGIC + header.tobytes())
                handle.write(self.ids.astype("<i8").tobytes())
                for part in (self._base, self._tail):
                    handle.write(np.ascontiguousarray(part, dtype="<f4").tobytes())
        except OSError:
            return  # a full disk costs the next process a slower start, nothing else
        self.saved_rows = len(self.ids)
        # Search the file just written from now on: the replaced one's pages are freed on disk
        # and the rows read since leave this process's memory.
        written = _read_snapshot(path)
        if written is not None and np.array_equal(written[4], self.ids):
            self._base, self._spare = written[5], _no_rows()


# A snapshot read ahead of the first search (preload), by path, until that search takes it:
# instance, appended, changed, complete_through, ids, and the rows (mapped read-only).
Snapshot = tuple[int, int, int, int, np.ndarray, np.ndarray]
_read_ahead: dict[str, Snapshot | None] = {}
_taken: set[str] = set()
_read_lock = threading.Lock()


def _read_snapshot(path: Path) -> Snapshot | None:
    """The snapshot's stamp, ids and rows, or None when the file is missing, of another format
    or short. The rows are the file's pages mapped read-only (populated in one call), not a
    copy: copying 150 MB into fresh memory took 0.05-0.5 s on these machines, and held up the
    model loading beside it. A save replaces the file and a deletion unlinks it, neither
    touches a mapped one; rows read later go to a buffer of their own (VectorIndex._put)."""
    import mmap

    try:
        with open(path, "rb") as handle:
            if handle.read(len(SNAPSHOT_MAGIC)) != SNAPSHOT_MAGIC:
                return None
            header = np.frombuffer(handle.read(48), dtype="<i8")
            if len(header) != 6:
                return None
            instance, appended, changed, rows, dim, complete_through = (int(v) for v in header)
            if dim != embeddings.DIM or rows < 0:
                return None
            ids = np.fromfile(handle, dtype="<i8", count=rows)
            start = len(SNAPSHOT_MAGIC) + 48 + 8 * rows
            if len(ids) != rows or os.fstat(handle.fileno()).st_size < start + rows * dim * 4:
                return None  # a short file: ignore it, the next full load replaces it
            populate = getattr(mmap, "MAP_POPULATE", 0)  # Linux: every page mapped in one call
            pages = (
                mmap.mmap(handle.fileno(), 0, flags=mmap.MAP_SHARED | populate, prot=mmap.PROT_READ) if rows else b""
            )
    except (OSError, ValueError):
        return None
    matrix = np.frombuffer(pages, dtype="<f4", count=rows * dim, offset=start if rows else 0).reshape(rows, dim)
    return instance, appended, changed, complete_through, ids.astype(np.int64), matrix


def preload(path: Path) -> None:
    """Map the snapshot now, without the database, so that another thread does it while the
    model loads (retrieval.warm_up); the first search checks it against the database."""
    with _read_lock:
        if str(path) not in _taken and str(path) not in _read_ahead:
            _read_ahead[str(path)] = _read_snapshot(path)


def _snapshot_for(path: Path) -> Snapshot | None:
    """The snapshot read ahead (waiting for a read under way), or read now."""
    with _read_lock:
        _taken.add(str(path))
        if str(path) in _read_ahead:
            return _read_ahead.pop(str(path))
    return _read_snapshot(path)


def snapshot_path(db: sqlite_utils.Database) -> Path | None:
    """The snapshot file beside a database file; None for a database in memory."""
    return beside.path_for(db, ".vectors")


def drop_snapshot(db: sqlite_utils.Database) -> None:
    """Delete the snapshot (after a deletion: it may hold the deleted snippets' vectors)."""
    path = snapshot_path(db)
    if path is None:
        return
    path.unlink(missing_ok=True)
    with _read_lock:
        _read_ahead.pop(str(path), None)  # nor in this process's mapping read ahead
    index = _indexes.get(beside.database_name(db))
    if index is not None:
        index.saved_rows = 0


def _instance(db: sqlite_utils.Database) -> int:
    return beside.state(db)["instance"]


def _counters(db: sqlite_utils.Database) -> tuple[int, int]:
    values = beside.state(db)
    return values["appended"], values["changed"]


_indexes: dict[str, VectorIndex] = {}
_indexes_lock = threading.Lock()


def index_for(db: sqlite_utils.Database) -> VectorIndex:
    """The process's index for this database file (shared by all its connections)."""
    with _indexes_lock:
        return _indexes.setdefault(beside.database_name(db), VectorIndex())


def synced(db: sqlite_utils.Database) -> VectorIndex:
    """The process's index for this database, every snippet embedded and loaded."""
    index = index_for(db)
    index.refresh(db)
    index.sync(db)
    return index
