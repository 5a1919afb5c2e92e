"""Training examples from the user's history: (input, output) pairs, with a held-out slice.

The one builder used by training (merger/train.py), merge scoring (merger/search.py) and
the benchmark. Sources of pairs:

- chat: a user message and the reply that followed it, when the user rated that reply good
  or corrected it (the correction is the output);
- imported LaMP profiles: each item becomes a pair in its task's own template, as OPPU does
  (an article's text -> its headline, a review -> its score, ...);
- other imported writing: an e-mail's subject -> its body, a titled note's title -> its body,
  and otherwise the opening of a text -> the rest of it.

Imported records are reassembled from their snippets, so a memory the user deleted is never
trained on.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

import sqlite_utils

from merger.tasks import plain_version, prompt

MIN_TRAIN = 16
MAX_OUTPUT_WORDS = 150


@dataclass(frozen=True)
class Example:
    input: str
    output: str
    origin: str  # "chat", "lamp article", "email", "note", ...
    date: str | None = None

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.input}\x00{self.output}".encode()).hexdigest()


@dataclass
class ExampleSet:
    train: list[Example]
    held_out: list[Example]
    skipped: Counter = field(default_factory=Counter)

    def summary(self) -> dict:
        """What went into an adapter, for its data card: counts and dates, never the text."""
        everything = self.train + self.held_out
        dates = sorted(e.date for e in everything if e.date)
        return {
            "examples_train": len(self.train),
            "examples_held_out": len(self.held_out),
            "by_origin": dict(Counter(e.origin for e in everything)),
            "first_date": dates[0] if dates else None,
            "last_date": dates[-1] if dates else None,
        }


def require_enough(examples: ExampleSet, minimum: int = MIN_TRAIN) -> None:
    from assistant.errors import MynaError

    if len(examples.train) < minimum:
        raise MynaError(
            f"Your history gives {len(examples.train)} training examples; training needs at least {minimum} "
            f"({minimum - len(examples.train)} more). Rate good replies (`myna history rate ID good`), correct "
            "bad ones, or import your own writing with `myna import`."
        )


def chat_examples(db: sqlite_utils.Database) -> list[Example]:
    rows = db.execute(
        """SELECT u.text, a.text, f.rating, f.correction, substr(a.created_at, 1, 10)
           FROM messages a
           JOIN feedback f ON f.message_id = a.id
           JOIN messages u ON u.id = (SELECT MAX(id) FROM messages
                                      WHERE conversation_id = a.conversation_id AND id < a.id AND role = 'user')
           WHERE a.role = 'assistant' AND (f.rating = 1 OR f.correction IS NOT NULL)
           ORDER BY a.id"""
    )
    return [Example(user, correction or reply, "chat", date) for user, reply, rating, correction, date in rows]


def records(db: sqlite_utils.Database) -> list[tuple[str, str | None, str]]:
    """(kind, date, text) of every imported record still in memory, reassembled in order."""
    rows = db.execute(
        """SELECT source_id, record, kind, date, text FROM snippets
           WHERE source_id IS NOT NULL ORDER BY source_id, record, position"""
    )
    out: list[tuple[str, str | None, str]] = []
    current = None
    for source_id, record, kind, date, text in rows:
        if (source_id, record) == current:
            out[-1] = (kind, date, out[-1][2] + "\n" + text)
        else:
            out.append((kind, date, text))
            current = (source_id, record)
    return out


def record_example(kind: str, date: str | None, text: str) -> Example | None:
    """A record as a pair in its task's template; None when it teaches nothing."""
    head, _, rest = text.partition("\n")
    lines = text.splitlines()
    if kind == "lamp article" and rest:
        return Example(prompt("LaMP_4", text=rest), head, kind, date)
    if kind == "lamp paper" and rest:
        return Example(prompt("LaMP_5", abstract=rest), head, kind, date)
    if kind == "lamp review" and lines[-1].startswith("Rating: "):
        return Example(prompt("LaMP_3", text="\n".join(lines[:-1])), lines[-1].removeprefix("Rating: "), kind, date)
    if kind == "lamp movie tag" and lines[-1].startswith("Tag: "):
        return Example(prompt("LaMP_2", description="\n".join(lines[:-1])), lines[-1].removeprefix("Tag: "), kind, date)
    if kind == "lamp post":
        plain = plain_version(text)
        return Example(prompt("LaMP_7", text=plain), text, kind, date) if plain and plain != text else None
    if kind == "email" and head.startswith("Subject: ") and rest.strip():
        return Example(f"Write an email with the subject: {head.removeprefix('Subject: ')}", _cap(rest.strip()), kind, date)
    if head.startswith("#") and rest.strip():
        return Example(f"Write a note titled: {head.lstrip('#').strip()}", _cap(rest.strip()), kind, date)
    words = text.split()
    if len(words) >= 24:
        cut = max(8, len(words) // 4)
        return Example(f"Continue this {kind} in my words: {' '.join(words[:cut])}", _cap(" ".join(words[cut:])), kind, date)
    return None


def _cap(text: str) -> str:
    words = text.split()
    return text if len(words) <= MAX_OUTPUT_WORDS else " ".join(words[:MAX_OUTPUT_WORDS])


def split(examples: list[Example], *, held_out_fraction: float = 0.2, seed: int = 0) -> ExampleSet:
    """A deterministic split: the same history always gives the same held-out slice."""
    unique = list({e.key: e for e in examples}.values())
    order = sorted(unique, key=lambda e: hashlib.sha256(f"{seed}:{e.key}".encode()).hexdigest())
    n_held = max(1, round(len(order) * held_out_fraction)) if len(order) > 4 and held_out_fraction > 0 else 0
    return ExampleSet(train=order[n_held:], held_out=order[:n_held])


def from_store(db: sqlite_utils.Database, *, held_out_fraction: float = 0.2, seed: int = 0) -> ExampleSet:
    examples = chat_examples(db)
    skipped: Counter = Counter()
    for kind, date, text in records(db):
        example = record_example(kind, date, text)
        if example is None:
            skipped[kind] += 1
        else:
            examples.append(example)
    result = split(examples, held_out_fraction=held_out_fraction, seed=seed)
    result.skipped = skipped
    return result
