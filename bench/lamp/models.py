"""What one user's stages made: their own adapters and their merges (bench.lamp.records)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.lamp.plan import FAMILIES, NIGHTLY, Method, family_of, is_nightly
from bench.lamp.records import Adapter, Merge, Merges, Nightly

# Adapters trained for the user, by the name methods give them (also their stage's file name),
# and where UserModels keeps each; every other model a method names is one of their merges.
# (The nightly run with other options, "nightly:budget=12", is kept in UserModels.nightly_variants.)
TRAINED = {"oppu": "oppu", "oppu-memory": "oppu_memory", "prime-oppu": "prime_oppu", NIGHTLY: "nightly"}

# What every merge is compared with, question by question (summary: "against").
MERGE_REFERENCES = ("uniform average of community adapters", "best single community adapter")


def merge_rows(table: dict[str, Method]) -> dict[str, str]:
    """The rows that answer with a merge of community adapters alone (no memory, nothing
    trained on top), each with its merge's label ("prime-a0.5")."""
    return {
        name: m.model
        for name, m in table.items()
        if m.model and m.model not in TRAINED and not is_nightly(m.model) and not m.rag and not m.layout
    }


@dataclass
class UserModels:
    oppu: Adapter | None = None  # their own adapter (path None: too little history, a cold start)
    oppu_memory: Adapter | None = None  # their own adapter, trained with what memory gives each example
    prime_oppu: Adapter | None = None  # their own adapter, trained on top of the penalized merge
    nightly: Nightly | None = None  # what `myna personalize` as shipped left active (path None: nothing)
    nightly_variants: dict[str, Nightly] = field(default_factory=dict)  # the same with other options, by model
    merges: Merges | None = None  # None: nothing merged for them
    # Merged by PriME's published fitness, by family (plan.FAMILIES: "published", "excess").
    published: dict[str, Merges] = field(default_factory=dict)

    @property
    def own(self) -> str | None:
        """The path of their own adapter; None for a cold start."""
        return self.oppu.path if self.oppu else None

    @property
    def sharers(self) -> list[str]:
        """Whose adapters their merges were made of."""
        return self.merges.adapters if self.merges else []

    def merged(self) -> dict[str, Merge]:
        """Each merge of Myna's search by label (prime-a0, uniform, ...): their utility is a
        log-likelihood and their similarity the closest sharer's, unlike the published ones."""
        return self.merges.by_label if self.merges else {}

    def record(self, model: str | None) -> Adapter | Merge | None:
        """The record of the model a method uses: one of TRAINED or a merge's label.
        None when the method needs no model or this user has none (a cold start)."""
        if model is None:
            return None
        if model in TRAINED or is_nightly(model):
            record = getattr(self, TRAINED[model]) if model in TRAINED else self.nightly_variants.get(model)
            return record if record and record.path else None
        family = family_of(model)
        if family and family != "merged":
            merges = self.published.get(family)
            return merges.by_label.get(model) if merges else None
        return self.merged().get(model)

    def families(self) -> list[tuple[str, Merges]]:
        """Every family of merges made for them, Myna's ("merged") first."""
        found = [("merged", self.merges)] + [(f, self.published.get(f)) for f in FAMILIES if f != "merged"]
        return [(family, merges) for family, merges in found if merges]
