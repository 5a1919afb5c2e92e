"""Finding the snippets relevant to a message: keywords (BM25), meaning (vectors), or both.

Hybrid ranking fuses the two lists by reciprocal rank (RRF, k = 60), which needs no score
calibration between BM25 and cosine. Recency, when asked for, discounts each score by the
snippet's age (half of it per year at full weight): a third RRF list could never outrank a
snippet both lists put first, a discount can.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import numpy as np
import sqlite_utils

from assistant import input_text
from assistant.memory import ann, keywords, store
from assistant.memory import index as vectors
from assistant.memory.store import Snippet
from assistant.store.words import terms_and_words

MODES = ("hybrid", "bm25", "embeddings")
RRF_K = 60
CANDIDATES = 50  # per list, before fusion and filtering
# BM25's cost grows with the postings of the terms searched: a tweet-like query full of
# "http" and "to" scores most of the index. Terms are taken rarest first (they weigh most
# in BM25) until their postings reach this budget; measured at 100k snippets (bench/memory.py)
# it keeps ~80 % of the unrestricted top 10 at a quarter of the cost.
MAX_POSTINGS = 20_000


# From this many vectors on, the two halves of a hybrid search run side by side. Below it the
# thread costs more than it saves: OpenBLAS and ONNX Runtime already use both cores for their
# half. Measured (python -m bench memory, 1 December, p50 with the query embedded): 10,000
# snippets 31.6 ms side by side against 27.1 ms one after the other; 100,000: 59.2 against 67.7.
PARALLEL_FROM = 50_000


@dataclass(frozen=True)
class Hit:
    snippet: Snippet
    score: float  # the fused (or single-list) score; higher is better


# Document frequencies, remembered per process only: query terms are the user's words, and a
# cache on disk would outlive the memories they came from.
_doc_freq: dict[tuple[str, str], tuple[int, int]] = {}


def document_frequencies(db: sqlite_utils.Database, terms: list[str]) -> dict[str, int]:
    db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.snippet_terms USING fts5vocab(main, snippets_fts, 'row')")
    path = db.execute("PRAGMA database_list").fetchone()[2]
    total = store.count(db)
    found = {}
    for term in terms:
        cached = _doc_freq.get((path, term))
        if cached is None or not 0.8 * cached[1] <= total <= 1.25 * cached[1]:  # stale once the index moved a lot
            row = db.execute("SELECT doc FROM temp.snippet_terms WHERE term = ?", (term,)).fetchone()
            cached = (row[0] if row else 0, total)
            _doc_freq[(path, term)] = cached
        found[term] = cached[0]
    return found


def bm25(db: sqlite_utils.Database, query: str, n: int = CANDIDATES) -> list[tuple[int, float]]:
    terms = terms_and_words(db, query)
    if not terms:
        return []
    index = keywords.index_for(db)
    if index is not None:  # a large memory: the precomputed index, and FTS5 for what it lacks
        ranked = index.top(list(terms), n) + _fts5(db, terms, n, "rowid > ?", [index.covered_through])
        if len(index.others):
            marks = ",".join("?" * len(index.others))
            ranked += _fts5(db, terms, n, f"rowid IN ({marks})", index.others.tolist())
        return sorted(ranked, key=lambda item: -item[1])[:n]
    frequencies = document_frequencies(db, terms)
    chosen, postings = [], 0
    for term in sorted(terms, key=lambda t: frequencies[t]):
        if frequencies[term] == 0:
            continue
        if chosen and postings + frequencies[term] > MAX_POSTINGS:
            break
        chosen.append(term)
        postings += frequencies[term]
    return _fts5(db, {term: terms[term] for term in chosen}, n)


def _fts5(
    db: sqlite_utils.Database, terms: dict[str, str], n: int, where: str = "", params: list | None = None
) -> list[tuple[int, float]]:
    """FTS5's own BM25 ranking of the snippets holding any of `terms` (and matching `where`);
    `terms` maps each stemmed term to what finds it in a MATCH (words.terms_and_words)."""
    if not terms:
        return []
    match = " OR ".join('"' + word.replace('"', '""') + '"' for word in terms.values())
    rows = db.execute(
        f"""SELECT rowid, -bm25(snippets_fts) FROM snippets_fts WHERE snippets_fts MATCH ? {"AND " + where if where else ""}
            ORDER BY bm25(snippets_fts) LIMIT ?""",
        [match, *(params or []), n],
    )
    return [(row[0], row[1]) for row in rows]


def prepare_dense(
    db: sqlite_utils.Database, query: str, query_vector: np.ndarray | None = None
) -> tuple[vectors.VectorIndex, np.ndarray | None]:
    """The up-to-date vector index and the query's vector (None when nothing is indexed)."""
    index = synced_index(db)
    return index, vector_for(index, query, query_vector)


def synced_index(db: sqlite_utils.Database) -> vectors.VectorIndex:
    return vectors.synced(db)


# Set by `exact_only` for a process that searches once.
_exact_only = False


@contextlib.contextmanager
def exact_only():
    """Within it, vector search scans every vector exactly and the approximate index (ann.py)
    is neither preloaded nor read: for a process that searches once, a one-shot `myna ask`,
    where an exact scan of 100,000 vectors (8.6 ms, python -m bench memory) costs less than
    importing faiss and reading the index (about 0.29 s, profiled on 2 December). The chat app,
    which searches at every message, keeps it."""
    global _exact_only
    before, _exact_only = _exact_only, True
    try:
        yield
    finally:
        _exact_only = before


def approximate(db: sqlite_utils.Database, index: vectors.VectorIndex) -> ann.AnnIndex | None:
    """A large memory's approximate index (ann.py), if it has one and it is wanted."""
    return ann.index_for(db) if len(index.ids) >= ann.MIN_VECTORS and not _exact_only else None


def warm_up(db: sqlite_utils.Database) -> threading.Thread | None:
    """Load the embedder in one thread, and a large memory's vector snapshot, keyword index and
    approximate vector index in another, now, if memory holds anything: a cold `myna ask` then
    pays for them while llama.cpp loads the model (all release the GIL for most of it), not
    after. The threads never touch `db`: the caller may close it while they still run (a
    closed app's connection used from this thread crashed the process in the app's tests).
    The first search checks what they read against the database. Returns a thread that ends
    when both have."""
    if store.count(db) == 0:
        return None
    files = [
        (vectors.preload, vectors.snapshot_path(db)),
        (keywords.preload, keywords.path_for(db)),
        (ann.preload, None if _exact_only else ann.path_for(db)),
    ]

    def load_embedder() -> None:
        from assistant.embeddings import embedder

        embedder()

    def read_files() -> None:
        for preload, path in files:
            if path is not None and path.exists():
                preload(path)

    def load() -> None:
        beside_it = threading.Thread(target=_quietly, args=(read_files,), name="myna-warm-up-files", daemon=True)
        beside_it.start()
        _quietly(load_embedder)
        beside_it.join()

    thread = threading.Thread(target=load, name="myna-warm-up", daemon=True)
    thread.start()
    return thread


def _quietly(work) -> None:
    try:
        work()
    except Exception:  # the search that needs it reports the failure itself
        pass


def vector_for(index: vectors.VectorIndex, query: str, query_vector: np.ndarray | None) -> np.ndarray | None:
    """The query's embedding, unless nothing is indexed (then the embedder is never loaded)."""
    if not len(index.ids):
        return None
    if query_vector is None:
        from assistant.embeddings import embedder

        query_vector = embedder().embed([query])[0]
    return query_vector


def dense(
    db: sqlite_utils.Database, query: str, n: int = CANDIDATES, query_vector: np.ndarray | None = None
) -> list[tuple[int, float]]:
    index, vector = prepare_dense(db, query, query_vector)
    return index.search(vector, n, approximate(db, index)) if vector is not None else []


def both(
    db: sqlite_utils.Database, query: str, query_vector: np.ndarray | None = None
) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(BM25 list, vector list). In a large memory the keyword search runs in a second thread
    while this one embeds the query and scans the matrix (SQLite, ONNX Runtime and NumPy all
    release the GIL)."""
    index = synced_index(db)  # the vector side's database work, before the connection is shared
    approx = approximate(db, index)
    if len(index.ids) < PARALLEL_FROM:
        vector = vector_for(index, query, query_vector)
        return bm25(db, query), index.search(vector, CANDIDATES, approx) if vector is not None else []
    keywords: list[list[tuple[int, float]]] = []
    failure: list[BaseException] = []

    def keyword_side() -> None:
        try:
            keywords.append(bm25(db, query))
        except BaseException as exc:  # re-raised in the calling thread
            failure.append(exc)

    worker = threading.Thread(target=keyword_side, name="myna-bm25")
    worker.start()
    try:
        vector = vector_for(index, query, query_vector)
        meaning = index.search(vector, CANDIDATES, approx) if vector is not None else []
    finally:
        worker.join()
    if failure:
        raise failure[0]
    return keywords[0], meaning


HALF_LIFE_DAYS = 365.0


def discount_by_age(
    db: sqlite_utils.Database, ranked: list[tuple[int, float]], weight: float
) -> list[tuple[int, float]]:
    """score x ((1 - weight) + weight x 0.5 ** (age / half-life)), re-sorted."""
    if not ranked:
        return ranked
    marks = ",".join("?" * len(ranked))
    ages = dict(
        db.execute(
            f"SELECT id, MAX(0, julianday('now') - julianday(COALESCE(date, created_at))) FROM snippets WHERE id IN ({marks})",
            [i for i, _ in ranked],
        )
    )
    rescored = [
        (i, score * ((1 - weight) + weight * 0.5 ** ((ages.get(i) or 0) / HALF_LIFE_DAYS))) for i, score in ranked
    ]
    return sorted(rescored, key=lambda item: -item[1])


def fuse(lists: list[list[tuple[int, float]]], weights: list[float]) -> list[tuple[int, float]]:
    scores: dict[int, float] = {}
    for ranked, weight in zip(lists, weights):
        for rank, (snippet_id, _) in enumerate(ranked, start=1):
            scores[snippet_id] = scores.get(snippet_id, 0.0) + weight / (RRF_K + rank)
    return sorted(scores.items(), key=lambda item: -item[1])


def search(
    db: sqlite_utils.Database,
    query: str,
    *,
    k: int = 4,
    mode: str = "hybrid",
    recency: float = 0.0,
    exclude_conversation: int | None = None,
    query_vector: np.ndarray | None = None,
) -> list[Hit]:
    """The `k` best snippets for `query`; snippets of `exclude_conversation` are left out
    (they are in the prompt already). `query_vector`, if given, is the query's embedding."""
    if mode not in MODES:
        raise ValueError(f"unknown retrieval mode {mode!r}")
    query = input_text.text(query)
    if store.count(db) == 0:
        return []  # nothing remembered: skip loading the embedder
    if mode == "bm25":
        ranked = bm25(db, query)
    elif mode == "embeddings":
        ranked = dense(db, query, query_vector=query_vector)
    else:
        ranked = fuse(list(both(db, query, query_vector)), [1.0, 1.0])
    if recency > 0:
        ranked = discount_by_age(db, ranked, recency)
    hits: list[Hit] = []
    # The fused list holds up to 2 x CANDIDATES ids and k of them are wanted: read the snippets
    # a few at a time, more when some were left out (reading all of them was 2 ms a search).
    start, size = 0, 2 * k
    while start < len(ranked) and len(hits) < k:
        batch = ranked[start : start + size]
        start, size = start + len(batch), 2 * size
        found = {s.id: s for s in store.get_many(db, [i for i, _ in batch])}
        for snippet_id, score in batch:
            snippet = found.get(snippet_id)
            if snippet is None or (
                exclude_conversation is not None and snippet.conversation_id == exclude_conversation
            ):
                continue
            hits.append(Hit(snippet, score))
            if len(hits) == k:
                break
    return hits


def find(db: sqlite_utils.Database, query: str, *, k: int = 50, mode: str = "hybrid", min_relevance: float = 0.0):
    """What a person searching their memory asks for: the snippets that contain the query's
    words (BM25) or come within `min_relevance` of its meaning (cosine), best first; not
    every snippet ranked, as `search` gives the prompt."""
    query_vector = None
    index = None
    if mode != "bm25" and store.count(db):
        index, query_vector = prepare_dense(db, query)
    hits = search(db, query, k=k, mode=mode, query_vector=query_vector)
    if index is None or query_vector is None:
        return hits  # keywords only: every hit contains them
    worded = {snippet_id for snippet_id, _ in bm25(db, query)}
    cosines = index.cosines(query_vector, [h.snippet.id for h in hits])
    return [h for h in hits if h.snippet.id in worded or cosines.get(h.snippet.id, 0.0) >= min_relevance]
