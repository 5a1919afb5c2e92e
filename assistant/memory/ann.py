"""Approximate vector search for a large memory: a faiss inverted-file index beside the
database (myna.ann).

The exact search multiplies the query by every vector: at 100k snippets that is 100k x 384
floats, the largest part of a hybrid search. An inverted-file index (faiss's
IndexIVFScalarQuantizer) groups the vectors around about sqrt(n) centroids once, and a query
scans only the groups whose centroids are nearest it, on copies of the vectors stored in 8
bits. The candidates it finds are scored again exactly from the float32 matrix
(index.VectorIndex), so every score is exact and only the choice of candidates is
approximate; `python -m bench memory` measures how much of the exact top 5 and top 50 it keeps.

Like the keyword index it covers the snippets up to the id it was built at; newer ones (a
chat's messages) are scanned exactly, which is cheap for a few. Snippets edited or deleted
since are taken out of the file at once (store.purge calls `prune`), so their vectors do not
outlive them there; an edited snippet's new vector is scanned exactly from then on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlite_utils

from assistant import embeddings
from assistant.atomic import atomic_open
from assistant.memory import beside
from assistant.memory import index as vectors

# Below this many vectors the exact scan is fast enough and no file is kept (python -m bench
# memory: exact top 50 at 10,000 snippets takes about 1 ms).
MIN_VECTORS = 20_000
STALE_SHARE = 0.1  # rebuild at the end of an import once this share is scanned exactly
PROBE_SHARE = 8  # a query scans 1/PROBE_SHARE of the groups
RESCORE = 2  # candidates taken from the 8-bit copies per result, before exact scoring
FORMAT = 1
SUFFIX = ".ann"  # the file beside myna.db
MAGIC = b"MYNAANN1"


@dataclass
class AnnIndex(beside.Stamped):
    index: object  # faiss.IndexIVFScalarQuantizer of the covered snippets' vectors, keyed by id

    def candidates(self, query: np.ndarray, n: int) -> np.ndarray:
        """Snippet ids among the covered ones that are likely in the query's top n."""
        if not len(self.ids):
            return np.zeros(0, dtype=np.int64)
        self.index.nprobe = max(1, self.index.nlist // PROBE_SHARE)
        _, found = self.index.search(np.asarray(query, dtype=np.float32).reshape(1, -1), n * RESCORE)
        return found[0][found[0] >= 0]


def path_for(db: sqlite_utils.Database) -> Path | None:
    return beside.path_for(db, SUFFIX)


def build(db: sqlite_utils.Database, matrix: vectors.VectorIndex) -> AnnIndex | None:
    """An index of every vector in `matrix`; None if the database moved on while it was read."""
    import faiss

    conn = db.conn
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")  # the counters and the hashes from one read snapshot
    try:
        state = beside.state(db)
        rows = dict(db.execute("SELECT id, content_hash FROM snippets").fetchall())
    finally:
        if own:
            conn.execute("COMMIT")
    with matrix.lock:
        if matrix.counters != (state["appended"], state["changed"]):
            return None  # a write since the matrix was read: the next import builds it
        ids, data = matrix.ids.copy(), np.ascontiguousarray(matrix.matrix)
        groups = max(1, int(math.sqrt(len(ids))))
        quantizer = faiss.IndexFlatIP(embeddings.DIM)
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, embeddings.DIM, groups, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        index.cp.niter = 10  # k-means converges well enough for search in 10 rounds, at 40 % of the default's time
        index.train(data)
        index.add_with_ids(data, ids)
    return AnnIndex(
        instance=state["instance"],
        appended=state["appended"],
        changed=state["changed"],
        covered_through=int(ids[-1]) if len(ids) else 0,
        ids=ids,
        hashes=beside.hash_prefixes([rows[i] for i in ids.tolist()]),
        others=np.zeros(0, np.int64),
        index=index,
    )


def save(db: sqlite_utils.Database, ann: AnnIndex) -> None:
    import faiss

    path = path_for(db)
    if path is None:
        return
    header = np.asarray(
        [FORMAT, ann.instance, ann.appended, ann.changed, ann.covered_through, len(ann.ids), len(ann.others)],
        dtype="<i8",
    )
    try:
        with atomic_open(path, "wb", encoding=None) as handle:
            handle.write(MAGIC + header.tobytes())
            for part in (ann.ids, ann.hashes, ann.others):
                handle.write(part.astype("<i8").tobytes())
            handle.write(faiss.serialize_index(ann.index).tobytes())
    except OSError:
        return  # a full disk: the exact scan answers alone, a little slower


def load(db: sqlite_utils.Database) -> AnnIndex | None:
    path = path_for(db)
    return read(path) if path is not None else None


def read(path: Path) -> AnnIndex | None:
    """The file at `path`; None when there is none or it cannot be read."""
    if not path.exists():
        return None
    import faiss

    try:
        data = path.read_bytes()
        if not data.startswith(MAGIC):
            return None
        start = len(MAGIC)
        header = [int(v) for v in np.frombuffer(data[start : start + 56], dtype="<i8")]
        if len(header) != 7 or header[0] != FORMAT:
            return None
        start += 56
        parts = []
        for count in (header[5], header[5], header[6]):
            parts.append(np.frombuffer(data[start : start + 8 * count], dtype="<i8").astype(np.int64))
            start += 8 * count
        if any(len(part) != count for part, count in zip(parts, (header[5], header[5], header[6]))):
            return None
        index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8, offset=start))
    except (OSError, RuntimeError, ValueError):
        return None  # unreadable or short: the next import replaces it
    if index.ntotal != header[5] or index.d != embeddings.DIM:
        return None
    return AnnIndex(
        instance=header[1],
        appended=header[2],
        changed=header[3],
        covered_through=header[4],
        ids=parts[0],
        hashes=parts[1],
        others=parts[2],
        index=index,
    )


def without(ann: AnnIndex, keep: np.ndarray) -> AnnIndex:
    """The index with only the snippets in `keep` (a boolean mask over its ids)."""
    if not keep.all():
        ann.index.remove_ids(ann.ids[~keep])
    ann.ids, ann.hashes = ann.ids[keep], ann.hashes[keep]
    return ann


def drop_file(db: sqlite_utils.Database) -> None:
    _files.drop(db)


def prune(db: sqlite_utils.Database) -> None:
    """After an edit or a deletion: take what changed out of the file now (store.purge)."""
    _files.prune(db, MIN_VECTORS)


def update(db: sqlite_utils.Database) -> bool:
    """After an import: (re)build the file when the memory is large and more than a tenth of
    it would be scanned exactly. Returns whether it was rebuilt."""
    if db.execute("SELECT COUNT(*) FROM snippets").fetchone()[0] < MIN_VECTORS:
        drop_file(db)
        return False
    matrix = vectors.synced(db)
    if len(matrix.ids) < MIN_VECTORS:
        drop_file(db)
        return False
    if not _files.stale(db, STALE_SHARE):
        return False
    ann = build(db, matrix)
    if ann is None:
        return False
    _files.keep(db, ann)
    return True


_files: beside.Copies[AnnIndex] = beside.Copies(SUFFIX, read, save, without)


def index_for(db: sqlite_utils.Database) -> AnnIndex | None:
    """The process's copy of the file, brought in line with the database; None when there is none."""
    return _files.get(db)


def preload(path: Path) -> None:
    """Read the file into this process's copy ahead of the first search (retrieval.warm_up)."""
    _files.preload(path)
