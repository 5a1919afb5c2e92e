"""What a training run may be told: the one place its options, defaults and limits live
(the CLI reads its defaults from here). Light to import: no torch, no llama.cpp."""

from __future__ import annotations

from dataclasses import dataclass

from assistant.errors import MynaError
from merger.formats.base_model import HF_NAMES
from merger.formats.lora import DEFAULT_TARGETS


@dataclass(frozen=True)
class TrainConfig:
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = DEFAULT_TARGETS  # GGUF module names (attn_q, attn_v, ...)
    learning_rate: float = 5e-4
    epochs: int = 2
    max_length: int = 256
    batch_size: int = 4
    seed: int = 0
    checkpoint_every: int = 10  # steps
    precision: str = "auto"  # "bf16", "fp32", or "auto": bf16 where the CPU computes it natively

    def check(self) -> None:
        if not 1 <= self.rank <= 256:
            raise MynaError(f"rank {self.rank} is out of range; use 1 to 256 (8 is typical).")
        if not 0 < self.learning_rate < 1:
            raise MynaError(f"learning rate {self.learning_rate} is out of range; use e.g. 5e-4.")
        if self.epochs < 1 or self.batch_size < 1 or self.max_length < 16:
            raise MynaError("epochs and batch size must be at least 1, and the maximum length at least 16 tokens.")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise MynaError(f"precision must be auto, bf16 or fp32, not {self.precision!r}.")
        unknown = set(self.targets) - set(HF_NAMES)
        if unknown or not self.targets:
            raise MynaError(f"unknown target modules {sorted(unknown)}; choose from {', '.join(HF_NAMES)}.")
