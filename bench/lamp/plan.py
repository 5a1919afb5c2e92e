"""What a benchmark run does: its users, questions, budgets and the methods it compares."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

MAX_TOKENS = {"LaMP_1": 6, "LaMP_2": 8, "LaMP_3": 4, "LaMP_4": 24, "LaMP_5": 32, "LaMP_6": 24, "LaMP_7": 48}


# Not part of Plan.key(): which tasks run, and what only the published-objective merges use
# (their cache files carry the pool size; see run.py).
OWN_KEYS = ("tasks", "published", "published_pool", "published_terms", "nightly_variants")


@dataclass(frozen=True)
class Family:
    """One kind of merge search a run compares: Myna's shipped objective ("merged"), or
    PriME's published fitness (the task metric of generated answers) with one of the
    answer-based privacy terms (merger.search.options.PRIVACY_TERMS)."""

    prefix: str  # its merges' labels: "{prefix}-a{alpha}"
    privacy: str | None  # the privacy term; None: Myna's shipped objective
    term: str  # what its privacy term measures, as reports say it
    utility: str  # what its utility is, as plots say it


FAMILIES = {
    "merged": Family("prime", None, "similarity to the closest sharer", "held-out log-likelihood per token"),
    "published": Family("published", "mean", "mean similarity to the sharers", "held-out task metric of answers"),
    "excess": Family(
        "excess", "excess", "mean similarity to the sharers beyond the base", "held-out task metric of answers"
    ),
    "likelihood": Family(
        "likely",
        "likelihood",
        "how much likelier the sharers' own answers became",
        "held-out task metric of answers",
    ),
}
TERM_FAMILY = {family.privacy: name for name, family in FAMILIES.items() if family.privacy}


def attack_key(family: str) -> str:
    """Where a run's privacy figures keep the rank correlation of a family's privacy term with
    the attack's AUROC."""
    return "similarity_vs_attack" if family == "merged" else f"{family}_similarity_vs_attack"


def family_of(label: str) -> str | None:
    """The family of a merge's label ("published-a0.5" -> "published"); None for the baselines."""
    return next((name for name, f in FAMILIES.items() if label.startswith(f"{f.prefix}-a")), None)


@dataclass(frozen=True)
class Plan:
    quick: bool = False
    tasks: tuple[str, ...] = ("LaMP_4", "LaMP_7")
    users: int = 4
    questions: int = 8
    profile: dict = field(default_factory=lambda: {"LaMP_4": 64, "LaMP_7": 96})
    epochs: int = 2
    max_length: int = 192
    budget: int = 16
    alpha: float = 0.5
    alphas: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
    sweep_users: int = 1
    held_out: int = 12
    probes: int = 4
    probe_tokens: int = 16
    fractions: tuple[float, ...] = (0.25, 0.5, 1.0)
    article_words: int = 150
    rag_modes: tuple[str, ...] = ("bm25", "embeddings", "hybrid")
    rag_ks: tuple[int, ...] = (1, 2, 4)
    rag_with_adapters: tuple = ("hybrid", 4)  # the shipped retrieval (Settings)
    # Memory layouts (assistant/prompt.py) compared side by side, each with rag_with_adapters.
    layouts: tuple[str, ...] = ("system", "user", "demos")
    min_examples: int = 8  # fewer training examples than this: no adapter (cold start)
    memory_room: int = 256  # tokens added to max_length for the memory an OPPU trained with memory sees
    oppu_variants: bool = True  # OPPU trained with memory, and OPPU trained on top of PriME
    pool: int = 8  # community adapters merged for a user at most: the most similar authors
    # PriME as its authors' code runs it, beside Myna's search: the task metric of generated
    # answers as fitness, the mean over sharers as privacy term, the n_sim most similar sharers;
    # and the same with the "excess" and "likelihood" terms (alpha 0 is the same search as the
    # published one's).
    published: bool = True
    published_pool: int = 3
    published_terms: tuple[str, ...] = ("mean", "excess", "likelihood")
    lorahub_l1: float = 0.05
    mia_examples: int = 16
    canaries: int = 4
    canary_candidates: int = 100
    # Each user's profile cut to these sizes in turn (Dataset.with_histories); empty: whole.
    histories: tuple[int, ...] = ()
    # The nightly run with other options beside the shipped one, each as "budget=12,max_adapters=3"
    # (PersonalizeConfig's fields): what a cheaper setting costs the user. Their stage files carry
    # the options in their names, so they are not part of key().
    nightly_variants: tuple[str, ...] = ()
    seed: int = 0

    def key(self) -> str:
        """What the cached stages depend on; not which tasks run, so `--tasks` runs of one
        task at a time fill the same cache a full run reads, nor the settings of stages that
        name their files by them (OWN_KEYS)."""
        settings = {k: v for k, v in asdict(self).items() if k not in OWN_KEYS}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


QUICK = Plan(
    quick=True,
    users=3,
    questions=2,
    profile={"LaMP_4": 20, "LaMP_7": 24},
    epochs=1,
    max_length=128,
    budget=4,
    # No alpha sweep: each user's merges at alpha 0 and the plan's alpha (0.5) only; the full
    # run sweeps. The sweep's extra searches and attacks were a fifth of the quick run.
    alphas=(0.0,),
    sweep_users=0,
    held_out=4,
    probes=2,
    probe_tokens=8,
    fractions=(0.5, 1.0),
    mia_examples=4,
    canaries=2,
    canary_candidates=16,
    article_words=40,
    rag_modes=("bm25", "hybrid"),
    rag_ks=(1, 4),
    layouts=("system", "demos"),
    memory_room=64,
    # The two extra OPPU trainings per user cost a fifth of the quick run; the full run has
    # them, and training on top of an adapter is tested on its own (test_training_real.py).
    oppu_variants=False,
    # The excess term's merges only (alpha > 0): the code every published-fitness family shares.
    published_terms=("excess",),
)


# What the user's assistant answers the morning after `myna personalize` ran for them with the
# shipped options (bench.lamp.nightly), with memory by the shipped settings.
NIGHTLY_ROW = "Myna's nightly, as shipped"
NIGHTLY = "nightly"  # its model's name; "nightly:budget=12" is the run with those options instead


def nightly_model(options: str = "") -> str:
    """The model name of the nightly run with `options` ("budget=12,max_adapters=3"; empty: as shipped)."""
    return f"{NIGHTLY}:{options}" if options else NIGHTLY


def is_nightly(model: str | None) -> bool:
    return model == NIGHTLY or (model or "").startswith(f"{NIGHTLY}:")


def nightly_options(model: str) -> dict:
    """The options a nightly model's name gives, by PersonalizeConfig's field, with their
    types ("nightly:budget=12" -> {"budget": 12}); a name or value it has not is refused in
    one sentence."""
    from dataclasses import fields

    from merger.nightly.config import PersonalizeConfig

    text = model.partition(":")[2]
    known = {f.name: f for f in fields(PersonalizeConfig)}
    options = {}
    for part in filter(None, text.split(",")):
        name, _, value = part.partition("=")
        name = name.strip().replace("-", "_")
        if name not in known or not value:
            raise SystemExit(
                f"--nightly-variant {text}: '{part}' is not OPTION=VALUE with an option of the nightly run "
                f"({', '.join(known)})."
            )
        default = getattr(PersonalizeConfig(), name)
        try:
            if isinstance(default, bool):
                if value.lower() not in ("true", "false"):
                    raise ValueError(value)
                options[name] = value.lower() == "true"
            elif isinstance(default, (int, float)):
                options[name] = type(default)(value)
            elif default is None and value.isdigit():  # rank: a number, or none
                options[name] = int(value)
            else:
                options[name] = value
        except ValueError:
            kind = {bool: "true or false", int: "a whole number", float: "a number"}[type(default)]
            raise SystemExit(
                f"--nightly-variant {text}: {name}={value} should be {kind} (its default is {default})."
            ) from None
    return options


def nightly_row(options: str) -> str:
    """A variant's row: "Myna's nightly, budget 12, max_adapters 3"."""
    said = ", ".join(f"{k} {v}" for k, v in nightly_options(nightly_model(options)).items())
    return f"Myna's nightly, {said}"


@dataclass(frozen=True)
class Method:
    model: str | None  # one of models.TRAINED, or a merge's label ("prime-a0.5", "uniform", ...); None: no adapter
    rag: tuple[str, int] | None  # (retrieval mode, k)
    layout: str | None = None  # the memory layout; None: the shipped default


def default_rag() -> tuple[str, int]:
    """What a user gets from memory with the shipped settings."""
    from assistant.settings import Settings

    return Settings().retrieval_mode, Settings().retrieval_top_k


def methods_for(plan: Plan, with_merges: bool) -> dict[str, Method]:
    from assistant.settings import Settings

    rag = tuple(plan.rag_with_adapters)
    table = {"non-personalized": Method(None, None)}
    for mode in plan.rag_modes:
        for k in plan.rag_ks:
            table[f"RAG {mode} k={k}"] = Method(None, (mode, k))
    for layout in plan.layouts:
        if layout != Settings().memory_layout:
            table[f"RAG {rag[0]} k={rag[1]}, {layout} layout"] = Method(None, rag, layout)
    table[NIGHTLY_ROW] = Method(NIGHTLY, default_rag())
    for options in plan.nightly_variants:
        table[nightly_row(options)] = Method(nightly_model(options), default_rag())
    table["OPPU"] = Method("oppu", None)
    table[f"OPPU + RAG {rag[0]} k={rag[1]}"] = Method("oppu", rag)
    if plan.oppu_variants:
        table["OPPU trained with memory"] = Method("oppu-memory", None)
        table[f"OPPU trained with memory + RAG {rag[0]} k={rag[1]}"] = Method("oppu-memory", rag)
    if with_merges:
        penalized = f"prime-a{plan.alpha:g}"
        table[f"PriME (alpha {plan.alpha:g})"] = Method(penalized, None)
        table[f"PriME (alpha {plan.alpha:g}) + RAG {rag[0]} k={rag[1]}"] = Method(penalized, rag)
        table["PriME (no privacy penalty)"] = Method("prime-a0", None)
        table[f"PriME (no privacy penalty) + RAG {rag[0]} k={rag[1]}"] = Method("prime-a0", rag)
        table["uniform average of community adapters"] = Method("uniform", None)
        table["best single community adapter"] = Method("best-single", None)
        table["LoraHub (likelihood + L1)"] = Method("lorahub", None)
        if plan.published and "mean" in plan.published_terms:
            table[f"PriME published objective (alpha {plan.alpha:g})"] = Method(f"published-a{plan.alpha:g}", None)
            table["PriME published objective (no privacy penalty)"] = Method("published-a0", None)
        for term in ("excess", "likelihood"):
            if plan.published and term in plan.published_terms:
                table[f"PriME published fitness, {term} privacy term (alpha {plan.alpha:g})"] = Method(
                    f"{FAMILIES[term].prefix}-a{plan.alpha:g}", None
                )
        if plan.oppu_variants:
            table[f"OPPU on top of PriME (alpha {plan.alpha:g})"] = Method("prime-oppu", None)
            table[f"OPPU on top of PriME (alpha {plan.alpha:g}) + RAG {rag[0]} k={rag[1]}"] = Method("prime-oppu", rag)
    return table


def default_method(table: dict[str, Method]) -> str | None:
    """The row that is what a new user gets: no adapter yet, memory with the shipped settings."""
    rag = default_rag()
    return next((name for name, m in table.items() if m.model is None and m.rag == rag and m.layout is None), None)


def nightly_method(table: dict[str, Method]) -> str | None:
    """The row that is what a user gets after `myna personalize` as shipped (bench.lamp.nightly);
    None when the run has no such row."""
    return NIGHTLY_ROW if NIGHTLY_ROW in table else None


def steps(table: dict[str, Method], alpha: float) -> list[tuple[str, str]]:
    """Pairs (row, the same pipeline without one step) in `table`, all answering with the
    shipped memory: the nightly run as shipped, the user's own adapter, the merge at `alpha`,
    each against memory alone; the nightly run against the user's own adapter alone (what the
    merge search under it and the gate add); the own adapter on top of the merge against the
    merge alone, and against the own adapter alone (what the merge under it adds); each
    nightly run with other options against memory alone, the shipped run, the own adapter
    alone and the other variants before it."""
    rag = default_rag()
    by_model = {m.model: name for name, m in table.items() if m.rag == rag and m.layout is None}
    merge = f"prime-a{alpha:g}"
    wanted = [
        ("nightly", None),
        ("nightly", "oppu"),
        ("oppu", None),
        (merge, None),
        ("prime-oppu", merge),
        ("prime-oppu", "oppu"),
    ]
    variants = [model for model in by_model if is_nightly(model) and model != NIGHTLY]
    for i, model in enumerate(variants):
        # Each against the variants before it too: "budget=12,max_adapters=3" against "budget=12"
        # is what the smaller pool alone changes.
        wanted += [(model, None), (model, NIGHTLY), (model, "oppu"), *((model, other) for other in variants[:i])]
    return [(by_model[row], by_model[without]) for row, without in wanted if row in by_model and without in by_model]


def as_served(spec: Method, has_model: bool) -> Method:
    """What a user actually gets for a method: without the model it needs (a cold start),
    memory with the shipped settings."""
    if spec.model is None or has_model:
        return spec
    return Method(None, spec.rag or default_rag(), spec.layout)
