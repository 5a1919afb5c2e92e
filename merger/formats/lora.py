"""A LoRA adapter as plain arrays, independent of any file format.

Matrices are kept as transformers/PEFT lay them out: A is (rank, in), B is (out, rank), the
update is scale * B @ A with scale = alpha / rank. Format-specific row orders (llama.cpp's
rotary permutation of q and k) are applied only by the writers and readers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from merger.formats.base_model import MODULES, Architecture

# The projections a personal adapter adapts unless told otherwise. Measured on this machine
# kind (bench/speed.py): with 2 threads every adapted matrix adds ops whose thread sync costs
# more than their arithmetic; rank 8 on q and v costs a few percent of decode speed, on all 7
# projections about a fifth. q and v are also PEFT's default for llama and the LoRA paper's.
DEFAULT_TARGETS = ("attn_q", "attn_v")


@dataclass
class Lora:
    rank: int
    alpha: float
    # "blk.{layer}.{module}" -> (A, B), module one of base_model.MODULES
    weights: dict[str, tuple[np.ndarray, np.ndarray]]
    base_fingerprint: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def modules(self) -> list[str]:
        return sorted({key.split(".", 2)[2] for key in self.weights}, key=MODULES.index)

    def delta(self, key: str) -> np.ndarray:
        """The dense weight update of one projection, (out, in)."""
        a, b = self.weights[key]
        return self.scale * (b.astype(np.float32) @ a.astype(np.float32))


def key(layer: int, module: str) -> str:
    return f"blk.{layer}.{module}"


def random_lora(
    arch: Architecture,
    *,
    rank: int = 8,
    alpha: float | None = None,
    modules: tuple[str, ...] = MODULES,
    seed: int = 0,
    std: float = 0.5,
) -> Lora:
    """An adapter with random A and B (both non-zero, so it changes the model's output).

    Used for tests and benchmarks: what it changes is arbitrary, but measurable.
    """
    rng = np.random.default_rng(seed)
    weights = {}
    for layer in range(arch.n_layers):
        for module in modules:
            fan_in, fan_out = arch.shape(module)
            a = (rng.standard_normal((rank, fan_in)) * (std / np.sqrt(fan_in))).astype(np.float32)
            b = (rng.standard_normal((fan_out, rank)) * (std / np.sqrt(rank))).astype(np.float32)
            weights[key(layer, module)] = (a, b)
    return Lora(rank=rank, alpha=float(alpha or rank), weights=weights, base_fingerprint=arch.fingerprint)
