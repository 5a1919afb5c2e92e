"""Memory: ingest throughput and retrieval latency at 1k, 10k and 100k snippets of real text.

    python -m bench memory [--scales 1000,10000,100000] [--queries 200] [--fresh] [--no-embedders]

Snippets are news-account tweets and news articles cut into ~50-word pieces (merger/data/corpora.py).
Queries are 200 tweets kept out of the index. Each scale gets its own database, kept under
bench/results/cache/memory-N/ with its ingest figures: importing 100k snippets takes about 16
minutes, so a rerun measures retrieval on the kept database unless --fresh is given. First, the
embedders side by side, idle and beside a CPU hog (bench/embedders.py, about 8 minutes).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import RESULTS, run_measured, save, table

ARTICLE_WORDS = 50
QUERIES_HELD_OUT = 300


def corpus() -> tuple[list[dict], list[str]]:
    """(snippet records, held-out query texts), in a fixed shuffled order."""
    from assistant.memory.chunking import split
    from merger.data import corpora as data

    tweets = data.tweets()
    records = [{"text": t.text, "kind": f"post by {t.account}"} for t in tweets[:-QUERIES_HELD_OUT]]
    for article in data.articles():
        for piece in split(f"{article.title}\n\n{article.text}", target=ARTICLE_WORDS):
            records.append({"text": piece, "kind": f"article from {article.outlet}", "date": article.date})
    random.Random(7).shuffle(records)
    return records, [t.text for t in tweets[-QUERIES_HELD_OUT:]]


def percentiles(values: list[float]) -> tuple[float, float]:
    return float(np.percentile(values, 50)) * 1000, float(np.percentile(values, 95)) * 1000


def timed(fn, items) -> list[float]:
    out = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - start)
    return out


def one_scale(records: list[dict], queries: list[str], n: int, fresh: bool) -> dict:
    from assistant.embeddings import embedder
    from assistant.memory import retrieval
    from assistant.store import open_database

    home = RESULTS / "cache" / f"memory-{n}"
    kept = home / "ingest.json"
    if fresh or not kept.exists():
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        figures = ingest_scale(records, n, home)
        kept.write_text(json.dumps(figures))
    figures = json.loads(kept.read_text())
    os.environ["MYNA_HOME"] = str(home)
    rebuild = first_search(home, snapshot=False)  # from SQLite; it writes the snapshot
    load = first_search(home, snapshot=True)
    db = open_database()
    query_vectors = embedder().embed(queries)
    retrieval.search(db, queries[0], k=5, query_vector=query_vectors[0])  # loads the vector index
    pairs = list(zip(queries, query_vectors))
    result = {
        **figures,
        "index_load_s": load["seconds"],
        "index_rebuild_s": rebuild["seconds"],
        "snapshot_used": load["snapshot_rows"] > 0,
        "db_mib": sum(p.stat().st_size for p in home.glob("myna.db*")) / 2**20,
        **vector_side(db, queries, pairs),
    }
    for mode in ("hybrid", "bm25", "embeddings"):
        lat = timed(lambda pair: retrieval.search(db, pair[0], k=5, mode=mode, query_vector=pair[1]), pairs)
        result[f"{mode}_p50_ms"], result[f"{mode}_p95_ms"] = percentiles(lat)
    lat = timed(lambda q: retrieval.search(db, q, k=5, mode="hybrid"), queries)
    result["hybrid_with_embedding_p50_ms"], result["hybrid_with_embedding_p95_ms"] = percentiles(lat)
    result.update(keyword_side(db, queries))
    # Baseline: the two lists one after the other, as before (the fused ranking is the same).
    lat = timed(lambda q: retrieval.fuse([retrieval.bm25(db, q), retrieval.dense(db, q)], [1.0, 1.0]), queries)
    result["hybrid_sequential_p50_ms"], result["hybrid_sequential_p95_ms"] = percentiles(lat)
    # Baseline: what a search costs without the in-memory index, reading every vector from SQLite.
    lat = timed(lambda pair: _naive_dense(db, pair[1]), pairs[:20])
    result["naive_dense_p50_ms"], result["naive_dense_p95_ms"] = percentiles(lat)
    result["home"] = str(home)
    db.conn.close()
    return result


def keyword_side(db, queries: list[str]) -> dict:
    """BM25 from the keyword index against FTS5 alone (the baseline, with its postings budget),
    and how much of exact BM25's top 5 (FTS5 over every query term) each keeps."""
    from assistant.memory import keywords, retrieval, store
    from assistant.store.words import terms_and_words

    if store.count(db) < keywords.MIN_SNIPPETS:
        return {"keyword_index": False}
    start = time.perf_counter()
    keywords.save(db, keywords.build(db))  # what an import ends with when much of the memory is new
    figures = {"keyword_index": True, "keyword_build_s": time.perf_counter() - start}
    keywords._files.clear()
    figures["keyword_load_s"] = first_keyword_load()
    exact = {q: [i for i, _ in retrieval._fts5(db, terms_and_words(db, q), 5)] for q in queries}
    lat = timed(lambda q: retrieval.bm25(db, q), queries)
    figures["bm25_index_p50_ms"], figures["bm25_index_p95_ms"] = percentiles(lat)
    figures["bm25_index_kept"] = _kept(exact, {q: retrieval.bm25(db, q)[:5] for q in queries})
    real_index_for = keywords.index_for
    keywords.index_for = lambda _db: None
    try:
        lat = timed(lambda q: retrieval.bm25(db, q), queries)
        figures["bm25_fts5_p50_ms"], figures["bm25_fts5_p95_ms"] = percentiles(lat)
        figures["bm25_fts5_kept"] = _kept(exact, {q: retrieval.bm25(db, q)[:5] for q in queries})
        lat = timed(lambda q: retrieval.search(db, q, k=5, mode="hybrid"), queries)
        figures["hybrid_fts5_p50_ms"], figures["hybrid_fts5_p95_ms"] = percentiles(lat)
    finally:
        keywords.index_for = real_index_for
    return figures


def vector_side(db, queries: list[str], pairs: list) -> dict:
    """The approximate vector index (ann.py, shipped from ann.MIN_VECTORS on) against the exact
    scan of every vector: top-50 latency, how much of the exact top 5 and top 50 it keeps, and
    the whole hybrid search (query embedded) with each."""
    from assistant.memory import ann, retrieval

    index = retrieval.synced_index(db)
    if len(index.ids) < ann.MIN_VECTORS:
        return {"ann": False}
    start = time.perf_counter()
    ann.save(db, ann.build(db, index))  # what an import ends with when much of the memory is new
    figures = {"ann": True, "ann_build_s": time.perf_counter() - start}
    ann._files.clear()
    figures["ann_load_s"] = json.loads(run_measured([sys.executable, "-c", ANN_LOAD], env=dict(os.environ))["stdout"])[
        "seconds"
    ]
    approx = ann.index_for(db)
    for label, used in (("exact", None), ("ann", approx)):
        lat = timed(lambda pair: index.search(pair[1], retrieval.CANDIDATES, used), pairs)
        figures[f"dense_{label}_p50_ms"], figures[f"dense_{label}_p95_ms"] = percentiles(lat)
    for n in (5, retrieval.CANDIDATES):
        exact = {q: [i for i, _ in index.search(v, n)] for q, v in pairs}
        figures[f"ann_kept_{n}"] = _kept(exact, {q: index.search(v, n, approx) for q, v in pairs})
    # The whole search with the exact scan against the shipped one (the approximate index),
    # query by query in turns, so that neither gains from running second.
    real_approximate = retrieval.approximate

    def exact_scan(_db, _index):
        return None

    lat = {"exact": [], "ann": []}
    try:
        for number, query in enumerate(queries):
            turns = [("exact", exact_scan), ("ann", real_approximate)]
            for label, approximate in turns if number % 2 else reversed(turns):
                retrieval.approximate = approximate
                start = time.perf_counter()
                retrieval.search(db, query, k=5, mode="hybrid")
                lat[label].append(time.perf_counter() - start)
    finally:
        retrieval.approximate = real_approximate
    for label, values in lat.items():
        figures[f"hybrid_{label}_p50_ms"], figures[f"hybrid_{label}_p95_ms"] = percentiles(values)
    return figures


ANN_LOAD = """
import json, time
from assistant.memory import ann
from assistant.store import open_database
db = open_database()
start = time.perf_counter()
index = ann.index_for(db)
print(json.dumps({"seconds": time.perf_counter() - start, "rows": len(index.ids) if index else 0}))
"""


def _kept(exact: dict[str, list[int]], got: dict[str, list[tuple[int, float]]]) -> float:
    wanted = sum(len(ids) for ids in exact.values())
    return sum(len(set(ids) & {i for i, _ in got[q]}) for q, ids in exact.items()) / max(wanted, 1)


KEYWORD_LOAD = """
import json, time
from assistant.memory import keywords
from assistant.store import open_database
db = open_database()
start = time.perf_counter()
index = keywords.index_for(db)
print(json.dumps({"seconds": time.perf_counter() - start, "rows": len(index.ids) if index else 0}))
"""


def first_keyword_load() -> float:
    """A new process reading the keyword index (MYNA_HOME is the scale's folder)."""
    return json.loads(run_measured([sys.executable, "-c", KEYWORD_LOAD], env=dict(os.environ))["stdout"])["seconds"]


FIRST_SEARCH = """
import json, sys, time
import numpy as np
from assistant.memory import retrieval
from assistant.memory import index as vectors
from assistant.store import open_database
db = open_database()
if sys.argv[1] == "rebuild":
    vectors.snapshot_path(db).unlink(missing_ok=True)
vector = np.full(384, 384 ** -0.5, dtype=np.float32)
start = time.perf_counter()
retrieval.dense(db, "x", query_vector=vector)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "snapshot_rows": vectors.index_for(db).saved_rows if sys.argv[1] == "load" else 0}))
"""


def first_search(home: Path, snapshot: bool) -> dict:
    """A new process's first vector search (its query vector given): the index load."""
    env = dict(os.environ, MYNA_HOME=str(home))
    mode = "load" if snapshot else "rebuild"
    measured = run_measured([sys.executable, "-c", FIRST_SEARCH, mode], env=env)
    return json.loads(measured["stdout"])


def ingest_scale(records: list[dict], n: int, home: Path) -> dict:
    """Import the first n records into a new database in `home`: throughput and embedding share."""
    from assistant.memory import index as vectors
    from assistant.memory import ingest
    from assistant.store import open_database

    os.environ["MYNA_HOME"] = str(home)
    source = home / "corpus.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in records[:n]))
    db = open_database()

    embed_seconds = 0.0
    real_encoder = vectors.encoder

    def timing_encoder():
        nonlocal embed_seconds
        start = time.perf_counter()
        encode = real_encoder()  # loading the model is part of what embedding costs
        embed_seconds += time.perf_counter() - start

        def wrapped(texts):
            nonlocal embed_seconds
            start = time.perf_counter()
            result = encode(texts)
            embed_seconds += time.perf_counter() - start
            return result

        return wrapped

    vectors.encoder = timing_encoder
    try:
        start = time.perf_counter()
        report = ingest.import_paths(db, [source], max_mb=2048)
        ingest_seconds = time.perf_counter() - start
    finally:
        vectors.encoder = real_encoder

    db.conn.close()
    source.unlink()
    return {
        "snippets": report.snippets,
        "ingest_s": ingest_seconds,
        "ingest_per_s": report.snippets / ingest_seconds,
        "embedding_share": embed_seconds / ingest_seconds,
        "ingested": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _naive_dense(db, query_vector: np.ndarray) -> list[int]:
    rows = db.execute(
        "SELECT s.id, e.vector FROM snippets s JOIN embeddings e ON e.content_hash = s.content_hash"
    ).fetchall()
    matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), -1)
    return [rows[i][0] for i in np.argsort(-(matrix @ query_vector))[:5]]


PEAK_SCRIPT = """
import json, os, resource, sys, time
from assistant.store import open_database
from assistant.memory import retrieval
db = open_database()
queries = json.loads(sys.argv[1])
start = time.perf_counter()
for q in queries:
    retrieval.search(db, q, k=5)
print(json.dumps({"seconds": time.perf_counter() - start, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def peak_memory(home: str, queries: list[str]) -> dict:
    env = dict(os.environ, MYNA_HOME=home)
    measured = run_measured([sys.executable, "-c", PEAK_SCRIPT, json.dumps(queries[:50])], env=env)
    return json.loads(measured["stdout"])


def run(scales: list[int], n_queries: int, fresh: bool = False, embedders: bool = True) -> dict:
    records, held_out = corpus()
    queries = held_out[:n_queries]
    results = {"corpus_size": len(records), "queries": len(queries), "scales": {}}
    if embedders:
        from bench import embedders as embedders_bench

        notes = held_out[-300:]  # short notes: posts no scale imports and no query uses
        snippets = [r["text"] for r in records if r["kind"].startswith("article")][:10_000]
        results["embedders"] = embedders_bench.run(notes, snippets, queries)
    for n in scales:
        if n > len(records):
            raise SystemExit(f"the corpus holds {len(records)} snippets, fewer than {n}")
        print(f"scale {n}: importing...", file=sys.stderr, flush=True)
        results["scales"][str(n)] = one_scale(records, queries, n, fresh)
    largest = results["scales"][str(max(scales))]
    results["peak"] = peak_memory(largest["home"], queries)
    return results


def report(results: dict) -> str:
    parts = []
    if "embedders" in results:
        from bench import embedders as embedders_bench

        parts.append(embedders_bench.report(results["embedders"]))
    return "\n\n".join([*parts, retrieval_report(results)])


def retrieval_report(results: dict) -> str:
    rows = []
    for n, r in results["scales"].items():
        rows.append(
            (
                f"{int(n):,} snippets: ingest",
                f"{r['ingest_per_s']:.0f} snippets/s",
                f"embedding {r['embedding_share']:.0%} of the time; {r['ingest_s']:.0f} s in all; database {r['db_mib']:.0f} MiB"
                + (f"; imported {r['ingested'][:16]}" if r.get("ingested") else ""),
            )
        )
        rows.append(
            (
                f"{int(n):,}: top-5 hybrid, query embedded",
                f"p50 {r['hybrid_with_embedding_p50_ms']:.1f} ms, p95 {r['hybrid_with_embedding_p95_ms']:.1f} ms",
                f"target p95 <= 20 ms at 100k; the two lists one after the other: p50 {r['hybrid_sequential_p50_ms']:.1f} ms, "
                f"p95 {r['hybrid_sequential_p95_ms']:.1f} ms",
            )
        )
        rows.append(
            (
                f"{int(n):,}: top-5 hybrid, embedding excluded",
                f"p50 {r['hybrid_p50_ms']:.1f} ms, p95 {r['hybrid_p95_ms']:.1f} ms",
                "",
            )
        )
        rows.append(
            (f"{int(n):,}: top-5 BM25 only", f"p50 {r['bm25_p50_ms']:.1f} ms, p95 {r['bm25_p95_ms']:.1f} ms", "")
        )
        if r.get("bm25_index_p50_ms") is not None:
            rows.append(
                (
                    f"{int(n):,}: BM25 from the keyword index",
                    f"p50 {r['bm25_index_p50_ms']:.1f} ms, p95 {r['bm25_index_p95_ms']:.1f} ms; "
                    f"keeps {r['bm25_index_kept']:.0%} of exact BM25's top 5",
                    f"FTS5 alone: p50 {r['bm25_fts5_p50_ms']:.1f} ms, p95 {r['bm25_fts5_p95_ms']:.1f} ms, keeps "
                    f"{r['bm25_fts5_kept']:.0%}; hybrid with FTS5 alone p95 {r['hybrid_fts5_p95_ms']:.1f} ms; "
                    f"index built in {r['keyword_build_s']:.1f} s, loaded by a new process in {r['keyword_load_s'] * 1000:.0f} ms",
                )
            )
        if r.get("ann"):
            rows.append(
                (
                    f"{int(n):,}: top-50 vector search, approximate index",
                    f"p50 {r['dense_ann_p50_ms']:.1f} ms, p95 {r['dense_ann_p95_ms']:.1f} ms; keeps "
                    f"{r['ann_kept_5']:.0%} of the exact top 5, {r['ann_kept_50']:.0%} of the top 50",
                    f"exact scan: p50 {r['dense_exact_p50_ms']:.1f} ms, p95 {r['dense_exact_p95_ms']:.1f} ms; "
                    f"hybrid, query embedded, in turns: p50/p95 {r['hybrid_ann_p50_ms']:.1f}/{r['hybrid_ann_p95_ms']:.1f} ms "
                    f"against {r['hybrid_exact_p50_ms']:.1f}/{r['hybrid_exact_p95_ms']:.1f} ms with the exact scan; "
                    f"index built in {r['ann_build_s']:.1f} s, loaded by a new process in {r['ann_load_s'] * 1000:.0f} ms",
                )
            )
        rows.append(
            (
                f"{int(n):,}: top-5 embeddings only",
                f"p50 {r['embeddings_p50_ms']:.1f} ms, p95 {r['embeddings_p95_ms']:.1f} ms",
                f"baseline without the in-memory index: p50 {r['naive_dense_p50_ms']:.0f} ms, {r['naive_dense_p50_ms'] / r['embeddings_p50_ms']:.0f}x slower",
            )
        )
        rows.append(
            (
                f"{int(n):,}: loading the vector index",
                f"{r['index_load_s'] * 1000:.0f} ms" + (" (from the snapshot)" if r.get("snapshot_used") else ""),
                f"once per process; read from SQLite: {r['index_rebuild_s'] * 1000:.0f} ms",
            )
        )
    peak = results["peak"]
    rows.append(
        ("peak memory, 50 searches at the largest scale", f"{peak['peak_mib']:.0f} MiB", "fresh process, index loaded")
    )
    return table(rows)


def main(scales: list[int], n_queries: int, fresh: bool = False, embedders: bool = True) -> None:
    results = run(scales, n_queries, fresh, embedders)
    print(report(results))
    print(f"saved to {save('memory', results)}")
