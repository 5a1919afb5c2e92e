"""Combining LoRA adapters with weights, two ways.

- `merge_elementwise`: A = sum w_i A_i and B = sum w_i B_i, as LoraHub and PriME merge. The
  update B A then has cross terms (w_i w_j B_i A_j); it needs adapters of equal rank.
- `merge_updates`: the weighted sum of the updates, sum w_i s_i B_i A_i, as llama.cpp computes
  when several adapters are active with their own scales. Exact when the ranks are
  concatenated; truncated by SVD to a rank budget, it is the best approximation of that rank.

Each adapter's alpha/rank scale is folded into its matrices first, so the result has scale 1
(alpha = rank). Modules an adapter does not adapt count as zero for it.

Weights are one per adapter, or (PriME's option) one per adapter and layer: a matrix, or the
search's flat vector of adapters x layers, adapter by adapter.

`on_top_of` stacks a merge on the task adapter its sharers were trained on top of (PriME's
task-adapted base), the one adapter that is then served.
"""

from __future__ import annotations

import numpy as np

from merger.formats.lora import Lora


def _scaled(lora: Lora) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The adapter's matrices with its scale folded into B (update = B A)."""
    return {key: (a.astype(np.float32), (b * lora.scale).astype(np.float32)) for key, (a, b) in lora.weights.items()}


def _keys(loras: list[Lora]) -> list[str]:
    return sorted({key for lora in loras for key in lora.weights})


def layer_of(key: str) -> int:
    """The layer of a module key: "blk.3.attn_q" -> 3."""
    return int(key.split(".")[1])


def _check(loras: list[Lora], weights) -> np.ndarray:
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim == 1 and loras and weights.size > len(loras) and weights.size % len(loras) == 0:
        weights = weights.reshape(len(loras), -1)  # the search's flat vector of per-layer weights
    if not loras or len(loras) != len(weights):
        raise ValueError(f"{len(loras)} adapters but {len(weights)} weights")
    fingerprints = {lora.base_fingerprint for lora in loras if lora.base_fingerprint}
    if len(fingerprints) > 1:
        raise ValueError("adapters for different base models cannot be merged")
    return weights


def _at(weights: np.ndarray, key: str) -> np.ndarray:
    """Each adapter's weight for one module: its only weight, or its weight for that layer."""
    if weights.ndim == 1:
        return weights
    layer = layer_of(key)
    if layer >= weights.shape[1]:
        raise ValueError(f"weights for {weights.shape[1]} layers, but the adapters have layer {layer}")
    return weights[:, layer]


def merge_elementwise(loras: list[Lora], weights) -> Lora:
    weights = _check(loras, weights)
    ranks = {lora.rank for lora in loras}
    if len(ranks) != 1:
        raise ValueError(f"element-wise merging needs equal ranks, got {sorted(ranks)}")
    rank = ranks.pop()
    scaled = [_scaled(lora) for lora in loras]
    merged = {}
    for key in _keys(loras):
        at = _at(weights, key)
        a = sum(w * s[key][0] for w, s in zip(at, scaled) if key in s)
        b = sum(w * s[key][1] for w, s in zip(at, scaled) if key in s)
        merged[key] = (np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32))
    return Lora(rank=rank, alpha=float(rank), weights=merged, base_fingerprint=loras[0].base_fingerprint)


def merge_updates(loras: list[Lora], weights, rank: int | None = None) -> Lora:
    """sum w_i (B_i A_i): ranks concatenated (exact), or truncated by SVD to `rank`. A module
    one adapter does not adapt gets zeros in its place, so every module has the same rank."""
    weights = _check(loras, weights)
    scaled = [_scaled(lora) for lora in loras]
    pairs = {}
    for key in _keys(loras):
        a_in = next(s[key][0].shape[1] for s in scaled if key in s)
        b_out = next(s[key][1].shape[0] for s in scaled if key in s)
        zeros = [(np.zeros((lora.rank, a_in), np.float32), np.zeros((b_out, lora.rank), np.float32)) for lora in loras]
        parts = [s.get(key, zero) for s, zero in zip(scaled, zeros)]
        a_parts = [w * a for w, (a, _) in zip(_at(weights, key), parts)]
        b_parts = [b for _, b in parts]
        a = np.concatenate(a_parts, axis=0)  # (sum r, in)
        b = np.concatenate(b_parts, axis=1)  # (out, sum r)
        pairs[key] = (a, b) if rank is None or rank >= a.shape[0] else _truncate(a, b, rank)
    final_rank = next(iter(pairs.values()))[0].shape[0]
    merged = {key: (a.astype(np.float32), b.astype(np.float32)) for key, (a, b) in pairs.items()}
    return Lora(rank=final_rank, alpha=float(final_rank), weights=merged, base_fingerprint=loras[0].base_fingerprint)


def _truncate(a: np.ndarray, b: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """The best rank-`rank` factors of B A, via QR of each factor (never the full matrix)."""
    qa, ra = np.linalg.qr(a.T.astype(np.float64))  # A^T = Qa Ra
    qb, rb = np.linalg.qr(b.astype(np.float64))  # B = Qb Rb
    u, s, vt = np.linalg.svd(rb @ ra.T)  # B A = Qb (Rb Ra^T) Qa^T
    root = np.sqrt(s[:rank])
    new_b = (qb @ u[:, :rank]) * root
    new_a = (root[:, None] * vt[:rank]) @ qa.T
    return new_a, new_b


def on_top_of(task: Lora, lora: Lora | None) -> Lora:
    """`lora` applied on top of a task adapter, as one adapter: their updates added (ranks
    concatenated, exact). What a merge of adapters trained on a task-adapted base becomes when
    it is served, trained further or published; the task adapter alone when `lora` is None."""
    return merge_updates([task], [1.0]) if lora is None else merge_updates([task, lora], [1.0, 1.0])
