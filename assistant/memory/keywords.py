"""BM25 for a large memory from a precomputed index beside the database (myna.keywords).

FTS5 ranks with bm25() by scoring every document that holds a query term, at about 2 µs a
posting: 43 ms at 100k snippets even with the rarest-terms budget (retrieval.MAX_POSTINGS).
This index stores, for each term, the BM25 weight each document gets from it (an
impact-ordered "eager" index), so a query is a sum of a few arrays and a partial sort: a few
milliseconds over every query term, no budget needed.

FTS5 stays the source of truth. The index is built from FTS5's own token table (so its terms
are the tokenizer's, stemmed alike) with FTS5's formula (k1 1.2, b 0.75, idf floored at
1e-6), and a test holds its scores to FTS5's. It covers the snippets up to the id it was built
at; newer ones (a chat's messages) are ranked by FTS5 on their own, which is fast for a few.
Snippets edited or deleted since are taken out of the file at once (store.purge calls
`prune`), so their words do not outlive them there; an edited one is ranked by FTS5 too.

Packaged BM25 libraries were measured for this: bm25s builds the same kind of index, but
importing it takes about 0.5 s (it loads scipy.sparse), which a cold `myna ask` would pay.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlite_utils

from assistant.atomic import atomic_open
from assistant.memory import beside

# Below this many snippets FTS5 alone answers in a few milliseconds and no file is kept
# (python -m bench memory: FTS5's BM25 p95 6 ms at 1,000 snippets, 20 ms at 10,000).
MIN_SNIPPETS = 5_000
# Rebuild at the end of an import once the snippets FTS5 ranks on its own exceed this share.
STALE_SHARE = 0.1
K1, B = 1.2, 0.75  # FTS5's bm25() defaults
FORMAT = 1
SUFFIX = ".keywords"  # the file beside myna.db


@dataclass
class KeywordIndex(beside.Stamped):
    """Its rows are the covered snippets (`ids`)."""

    terms: dict[str, int]
    indptr: np.ndarray  # int64 [terms + 1]: term t's postings are indptr[t]:indptr[t + 1]
    rows: np.ndarray  # int32 [postings]: a row of `ids`
    impacts: np.ndarray  # float32 [postings]: the BM25 weight of that term in that row

    def top(self, terms: list[str], n: int) -> list[tuple[int, float]]:
        """The n best (snippet id, BM25 score) of the covered snippets for these terms."""
        found = [self.terms[t] for t in terms if t in self.terms]
        if not found or not len(self.ids):
            return []
        spans = [(int(self.indptr[t]), int(self.indptr[t + 1])) for t in found]
        rows = np.concatenate([self.rows[a:b] for a, b in spans])
        weights = np.concatenate([self.impacts[a:b] for a, b in spans])
        scores = np.bincount(rows, weights=weights, minlength=len(self.ids))
        hit = np.flatnonzero(scores)
        n = min(n, len(hit))
        if n == 0:
            return []
        best = hit[np.argpartition(-scores[hit], n - 1)[:n]]
        best = best[np.lexsort((best, -scores[best]))]  # ties: the older snippet first
        return [(int(self.ids[r]), float(scores[r])) for r in best]


def path_for(db: sqlite_utils.Database) -> Path | None:
    return beside.path_for(db, SUFFIX)


def build(db: sqlite_utils.Database) -> KeywordIndex:
    """Read FTS5's tokens of every snippet and compute each posting's BM25 weight."""
    db.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.snippet_instances USING fts5vocab(main, snippets_fts, 'instance')"
    )
    conn = db.conn
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")  # one read snapshot: counters, snippets and tokens agree
    try:
        state = beside.state(db)
        snippets = db.execute("SELECT id, content_hash FROM snippets ORDER BY id").fetchall()
        cursor = db.execute(
            "SELECT term, doc, COUNT(*) FROM temp.snippet_instances GROUP BY term, doc ORDER BY term, doc"
        )
        terms: dict[str, int] = {}
        term_parts, doc_parts, tf_parts = [], [], []
        while chunk := cursor.fetchmany(200_000):
            ids_of_terms = [terms.setdefault(term, len(terms)) for term, _, _ in chunk]
            term_parts.append(np.fromiter(ids_of_terms, dtype=np.int64, count=len(chunk)))
            doc_parts.append(np.fromiter((row[1] for row in chunk), dtype=np.int64, count=len(chunk)))
            tf_parts.append(np.fromiter((row[2] for row in chunk), dtype=np.float64, count=len(chunk)))
    finally:
        if own:
            conn.execute("COMMIT")
    ids = np.fromiter((row[0] for row in snippets), dtype=np.int64, count=len(snippets))
    hashes = beside.hash_prefixes([row[1] for row in snippets])
    term_of = np.concatenate(term_parts) if term_parts else np.zeros(0, np.int64)
    docs = np.concatenate(doc_parts) if doc_parts else np.zeros(0, np.int64)
    tf = np.concatenate(tf_parts) if tf_parts else np.zeros(0)
    rows = np.searchsorted(ids, docs)
    lengths = np.bincount(rows, weights=tf, minlength=len(ids))  # tokens per snippet
    total = max(len(ids), 1)
    average = max(lengths.sum() / total, 1e-9)
    df = np.bincount(term_of, minlength=len(terms))
    idf = np.maximum(np.log((total - df + 0.5) / (df + 0.5)), 1e-6)
    impacts = idf[term_of] * tf * (K1 + 1) / (tf + K1 * (1 - B + B * lengths[rows] / average))
    indptr = np.concatenate([[0], np.cumsum(df)]).astype(np.int64)  # rows arrive sorted by term
    return KeywordIndex(
        instance=state["instance"],
        appended=state["appended"],
        changed=state["changed"],
        covered_through=int(ids[-1]) if len(ids) else 0,
        terms=terms,
        indptr=indptr,
        rows=rows.astype(np.int32),
        impacts=impacts.astype(np.float32),
        ids=ids,
        hashes=hashes,
        others=np.zeros(0, np.int64),
    )


def save(db: sqlite_utils.Database, index: KeywordIndex) -> None:
    path = path_for(db)
    if path is None:
        return
    vocabulary = "\n".join(index.terms).encode("utf-8")  # ids are insertion order
    header = np.asarray(
        [FORMAT, index.instance, index.appended, index.changed, index.covered_through, len(index.terms)], dtype="<i8"
    )
    try:
        with atomic_open(path, "wb", encoding=None) as handle:
            np.savez(
                handle,
                header=header,
                vocabulary=np.frombuffer(vocabulary, dtype=np.uint8),
                indptr=index.indptr,
                rows=index.rows,
                impacts=index.impacts,
                ids=index.ids,
                hashes=index.hashes,
                others=index.others,
            )
    except OSError:
        return  # a full disk: FTS5 answers alone, a little slower


def load(db: sqlite_utils.Database) -> KeywordIndex | None:
    path = path_for(db)
    return read(path) if path is not None else None


def read(path: Path) -> KeywordIndex | None:
    """The file at `path`; None when there is none or it cannot be read."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            header = [int(v) for v in data["header"]]
            if len(header) != 6 or header[0] != FORMAT:
                return None
            vocabulary = data["vocabulary"].tobytes().decode("utf-8")
            words = vocabulary.split("\n") if vocabulary else []
            if len(words) != header[5]:
                return None
            arrays = {name: data[name] for name in ("indptr", "rows", "impacts", "ids", "hashes", "others")}
    except (OSError, ValueError, KeyError, UnicodeDecodeError, EOFError, zipfile.BadZipFile):
        return None  # unreadable or short: the next build replaces it
    return KeywordIndex(
        instance=header[1],
        appended=header[2],
        changed=header[3],
        covered_through=header[4],
        terms={w: i for i, w in enumerate(words)},
        **arrays,
    )


def without(index: KeywordIndex, keep_row: np.ndarray) -> KeywordIndex:
    """The index with only the rows in `keep_row` (a boolean mask), and without the terms that
    no longer occur."""
    new_row = np.cumsum(keep_row) - 1
    term_of = np.repeat(np.arange(len(index.terms)), np.diff(index.indptr))
    keep = keep_row[index.rows]
    term_of, rows, impacts = term_of[keep], new_row[index.rows[keep]], index.impacts[keep]
    counts = np.bincount(term_of, minlength=len(index.terms))
    words = list(index.terms)
    kept_terms = np.flatnonzero(counts)
    return KeywordIndex(
        instance=index.instance,
        appended=index.appended,
        changed=index.changed,
        covered_through=index.covered_through,
        terms={words[t]: i for i, t in enumerate(kept_terms)},
        indptr=np.concatenate([[0], np.cumsum(counts[kept_terms])]).astype(np.int64),
        rows=rows.astype(np.int32),
        impacts=impacts,
        ids=index.ids[keep_row],
        hashes=index.hashes[keep_row],
        others=index.others,
    )


def drop_file(db: sqlite_utils.Database) -> None:
    _files.drop(db)


def prune(db: sqlite_utils.Database) -> None:
    """After an edit or a deletion: take what changed out of the file now (store.purge)."""
    _files.prune(db, MIN_SNIPPETS)


def update(db: sqlite_utils.Database) -> bool:
    """After an import: (re)build the file when the memory is large and FTS5 ranks more than
    a tenth of it on its own. Returns whether it was rebuilt."""
    total = db.execute("SELECT COUNT(*) FROM snippets").fetchone()[0]
    if total < MIN_SNIPPETS:
        drop_file(db)
        return False
    if not _files.stale(db, STALE_SHARE):
        return False
    _files.keep(db, build(db))
    return True


_files: beside.Copies[KeywordIndex] = beside.Copies(SUFFIX, read, save, without)


def index_for(db: sqlite_utils.Database) -> KeywordIndex | None:
    """The process's copy of the file, brought in line with the database; None when there is none."""
    return _files.get(db)


def preload(path: Path) -> None:
    """Read the file into this process's copy ahead of the first search (retrieval.warm_up)."""
    _files.preload(path)
