"""Embedders side by side: Myna's (ONNX Runtime) against sentence-transformers and the NumPy
network Myna ran before, on the same texts in one run, on an idle machine and beside a CPU hog.

Part of `python -m bench memory` (`--no-embedders` skips it). Short notes are the corpus's
held-out news posts (tweets, ~25 words); snippets are its ~50-word article pieces. Each rate is
texts embedded per second, from as many texts as fit in the time cap (a slow embedder beside
the hog would otherwise take hours); a query is one text embedded alone, as a search does.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from bench.common import table

REPO_ROOT = Path(__file__).resolve().parent.parent

NAMES = ("onnxruntime", "sentence-transformers", "numpy")
CAP_S = 45.0
QUERIES = 40

LOAD = {
    "onnxruntime": "from assistant.embeddings import MiniLM; e = MiniLM(); f = e.embed",
    "sentence-transformers": (
        "import os; os.environ['HF_HUB_OFFLINE'] = '1'\n"
        "from sentence_transformers import SentenceTransformer\n"
        "from assistant.embeddings import model_dir\n"
        "m = SentenceTransformer(str(model_dir()), device='cpu')\n"
        "f = lambda texts: m.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)"
    ),
    "numpy": "from bench.numpy_minilm import NumpyMiniLM; e = NumpyMiniLM(); f = e.embed",
}
COLD = "import json, time\nstart = time.perf_counter()\n{load}\nf(['I am allergic to peanuts.'])\nprint(json.dumps(time.perf_counter() - start))"


def load(name: str) -> Callable[[list[str]], np.ndarray]:
    scope: dict = {}
    exec(LOAD[name], scope)  # the same lines the cold-start figure runs in a fresh process
    return scope["f"]


def cold_start(name: str) -> float:
    """A fresh process: imports, model load and one short text, in seconds."""
    done = subprocess.run(
        [sys.executable, "-c", COLD.format(load=LOAD[name])],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def rate(embed: Callable[[list[str]], np.ndarray], texts: list[str], cap: float = CAP_S) -> dict:
    """Texts per second over batches of 32 (the length-sorted batching every embedder does),
    until all are done or the cap is reached."""
    done, start = 0, time.perf_counter()
    for first in range(0, len(texts), 256):
        embed(texts[first : first + 256])
        done = min(first + 256, len(texts))
        if time.perf_counter() - start > cap:
            break
    seconds = time.perf_counter() - start
    return {"texts": done, "seconds": seconds, "per_s": done / seconds, "capped": done < len(texts)}


def query_latency(embed: Callable[[list[str]], np.ndarray], queries: list[str]) -> dict:
    times = []
    for query in queries:
        start = time.perf_counter()
        embed([query])
        times.append(time.perf_counter() - start)
    return {"p50_ms": float(np.percentile(times, 50)) * 1000, "p95_ms": float(np.percentile(times, 95)) * 1000}


def _spin() -> None:
    while True:
        pass


@contextlib.contextmanager
def cpu_hog(processes: int | None = None) -> Iterator[None]:
    """One busy process per core, at normal priority: a build or a test suite beside the chat."""
    hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(processes or os.cpu_count() or 2)]
    for hog in hogs:
        hog.start()
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.join()


def run(notes: list[str], snippets: list[str], queries: list[str]) -> dict:
    results: dict = {"notes": len(notes), "snippets": len(snippets), "cold_start_s": {}}
    for name in NAMES:
        results["cold_start_s"][name] = cold_start(name)
    embedders = {name: load(name) for name in NAMES}
    reference = embedders["sentence-transformers"](notes[:64])
    results["max_abs_diff_to_sentence_transformers"] = {
        name: float(np.abs(embedders[name](notes[:64]) - reference).max()) for name in NAMES
    }
    for condition in ("idle", "hog"):
        context = cpu_hog() if condition == "hog" else contextlib.nullcontext()
        with context:
            for name, embed in embedders.items():
                print(f"embedders: {name}, {condition}", file=sys.stderr, flush=True)
                embed(notes[:8])  # warm: first-call allocations are not the steady rate
                results[f"{name}/{condition}"] = {
                    "notes": rate(embed, notes),
                    "snippets": rate(embed, snippets),
                    "query": query_latency(embed, queries[:QUERIES]),
                }
    return results


def report(results: dict) -> str:
    rows = []
    base = results["onnxruntime/idle"]
    for condition in ("idle", "hog"):
        for name in NAMES:
            r = results[f"{name}/{condition}"]
            ours = results[f"onnxruntime/{condition}"]
            label = "alone" if condition == "idle" else "beside a CPU hog (one busy process per core)"

            def cell(kind: str) -> str:
                capped = " (capped)" if r[kind]["capped"] else ""
                return f"{r[kind]['per_s']:.0f}/s{capped}"

            ratio = ours["snippets"]["per_s"] / r["snippets"]["per_s"]
            rows.append(
                (
                    f"{name}, {label}",
                    f"notes {cell('notes')}, snippets {cell('snippets')}",
                    f"query p50 {r['query']['p50_ms']:.1f} ms, p95 {r['query']['p95_ms']:.1f} ms"
                    + ("" if name == "onnxruntime" else f"; onnxruntime {ratio:.1f}x its snippet rate"),
                )
            )
    rows.append(
        (
            "cold start (fresh process, one text)",
            ", ".join(f"{n} {s:.2f} s" for n, s in results["cold_start_s"].items()),
            "",
        )
    )
    rows.append(
        (
            "max |difference| to sentence-transformers",
            ", ".join(f"{n} {d:.1e}" for n, d in results["max_abs_diff_to_sentence_transformers"].items()),
            f"{results['notes']} notes, {results['snippets']} snippets; slowdown beside the hog: "
            f"{base['snippets']['per_s'] / results['onnxruntime/hog']['snippets']['per_s']:.1f}x (onnxruntime)",
        )
    )
    return table(rows)
