"""What the benchmark's stages make, as typed records: an adapter trained for a user, the
merges made for a user, a method's answers to a user's questions.

Each is saved as JSON by `cache.cached` (to_json) and read back from it (from_json), so a run
that stopped resumes from files an earlier version of the benchmark wrote: fields a record does
not know are ignored, and every field has the meaning it had in those files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


def _known(cls, data: dict) -> dict:
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in data.items() if key in names}


@dataclass(kw_only=True)
class Stage:
    """What every stage records about itself: its own seconds and the process's memory peak
    when it ended (MiB; an upper bound for the stage). Filled in by `cached` when left None."""

    seconds: float | None = None
    peak_mib: float | None = None

    @classmethod
    def from_json(cls, data: dict):
        return cls(**_known(cls, data))

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(kw_only=True)
class Adapter(Stage):
    """An adapter trained for one user (OPPU and its variants). `path` None: their history was
    too small to train on, a cold start answered with memory alone."""

    path: str | None
    examples: int  # training examples it had (or would have had)
    bytes: int = 0
    held_out_before: float | None = None  # mean loss on held-out examples, before and after training
    held_out_after: float | None = None
    cold_start: bool = False


@dataclass(kw_only=True)
class Nightly(Adapter):
    """What `myna personalize` left active for one user (bench.lamp.nightly): `path` None when
    the run published nothing (a cold start, or no merge better than no adapter); `examples`
    counts every example of their history, held out or not, as the cold-start rule does."""

    status: str  # the run's: "published", "no-improvement" or "skipped"
    message: str = ""
    fitness_before: float | None = None
    fitness_after: float | None = None
    adapters: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    phase_seconds: dict[str, float] = field(default_factory=dict)
    config: dict = field(default_factory=dict)  # the options it ran with (PersonalizeConfig's defaults)


@dataclass(kw_only=True)
class Merge(Stage):
    """One merge of other users' adapters, scored on this user's held-out examples."""

    path: str
    weights: list[float]
    # What the search maximizes and what its privacy term measures: mean log-probability per
    # token and ROUGE-L of probe answers to the closest sharer's; for a merge by PriME's
    # published fitness, the task metric of its answers and their family's term (plan.FAMILIES).
    utility: float
    similarity: float | None
    bytes: int = 0
    chosen: str | None = None  # the best single adapter's sharer


@dataclass(kw_only=True)
class Merges(Stage):
    """A user's merges (PriME at each alpha, the baselines), all from the same sharers."""

    adapters: list[str]  # the sharers, in the order of every merge's weights
    by_label: dict[str, Merge] = field(default_factory=dict)  # prime-a0.5, uniform, ...

    @classmethod
    def from_json(cls, data: dict) -> Merges:
        # On disk the labels sit beside "adapters"; a merge's cost is its own seconds with the
        # stage's memory peak, which it shares with the other merges.
        by_label = {
            label: Merge.from_json({"peak_mib": data.get("peak_mib"), **value})
            for label, value in data.items()
            if isinstance(value, dict) and "path" in value
        }
        return cls(adapters=list(data["adapters"]), by_label=by_label, **_known(Stage, data))

    def to_json(self) -> dict:
        merges = {
            label: {k: v for k, v in m.to_json().items() if k != "peak_mib"} for label, m in self.by_label.items()
        }
        return {"adapters": self.adapters, **merges, "seconds": self.seconds, "peak_mib": self.peak_mib}


@dataclass(kw_only=True)
class Answers(Stage):
    """A method's greedy answers to one user's questions, and what each prompt held."""

    predictions: dict[str, str]  # question id -> answer
    contexts: dict[str, list[str]] = field(default_factory=dict)  # question id -> memory texts in its prompt
