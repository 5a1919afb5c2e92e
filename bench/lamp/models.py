"""What one user's stages made: their own adapters and their merges, each as its stage
record (the cached JSON: path, seconds, bytes, ...)."""

from __future__ import annotations

from dataclasses import dataclass

# Adapters trained for the user, by the name methods give them (also their stage's file name),
# and where UserModels keeps each; every other model a method names is one of their merges.
TRAINED = {"oppu": "oppu", "oppu-memory": "oppu_memory", "prime-oppu": "prime_oppu"}


@dataclass
class UserModels:
    oppu: dict | None = None  # their own adapter (path None: too little history, a cold start)
    oppu_memory: dict | None = None  # their own adapter, trained with what memory gives each example
    prime_oppu: dict | None = None  # their own adapter, trained on top of the penalized merge
    merges: dict | None = None  # {"adapters": sharer names, label: record, ...}; None: nothing merged

    @property
    def own(self) -> str | None:
        """The path of their own adapter; None for a cold start."""
        return self.oppu["path"] if self.oppu else None

    @property
    def sharers(self) -> list[str]:
        """Whose adapters their merges were made of."""
        return list((self.merges or {}).get("adapters", []))

    def merged(self) -> dict[str, dict]:
        """Each merge's record by label (prime-a0, uniform, ...)."""
        return {
            label: record
            for label, record in (self.merges or {}).items()
            if isinstance(record, dict) and "path" in record
        }

    def record(self, model: str | None) -> dict | None:
        """The record of the model a method uses: one of TRAINED or a merge's label.
        None when the method needs no model or this user has none (a cold start)."""
        if model is None:
            return None
        if model in TRAINED:
            record = getattr(self, TRAINED[model])
            return record if record and record.get("path") else None
        merged = self.merged()
        if model not in merged:
            return None
        return {**merged[model], "peak_mib": self.merges.get("peak_mib")}
