"""Training examples from the user's history: (input, output) pairs, with a held-out slice.

The one builder used by training (merger/training/train.py), merge scoring (merger/search/scoring.py) and
the benchmark. With `memory` settings, each example also carries what recall finds for its
input in the rest of the history (never its own record), and is trained in the prompt
layout chat uses (assistant/prompt.py): the adapter learns to use what it is given. Sources
of pairs:

- chat: a user message and the reply that followed it, when the user rated that reply good
  or corrected it (the correction is the output);
- imported LaMP profiles: each item becomes a pair in its task's own template, as OPPU does
  (an article's text -> its headline, a review -> its score, ...);
- other imported writing: an e-mail's subject -> its body, a titled note's title -> its body,
  and otherwise the opening of a text -> the rest of it;
- optionally, grounding pairs: a sentence of a note with a word blanked out -> that word,
  with the note among the memories given (a cloze the model can only solve by reading them).

Imported records are reassembled from their snippets, so a memory the user deleted is never
trained on.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field, replace

import sqlite_utils

from assistant.memory.store import Snippet
from assistant.records import task_pair
from assistant.settings import Settings

MIN_TRAIN = 16
MAX_OUTPUT_WORDS = 150
MIN_NOTE_WORDS = 24  # a shorter untitled note has no continuation worth learning


@dataclass(frozen=True)
class Example:
    input: str
    output: str
    origin: str  # "chat", "lamp article", "email", "note", ...
    date: str | None = None
    memory: tuple[Snippet, ...] = ()  # what recall gives the input (see from_store)
    layout: str = ""  # how that memory is laid out (assistant/prompt.py), as in the user's chats
    own: tuple[int, ...] = ()  # the snippets of the record this example was made from
    conversation: int | None = None  # the chat it comes from

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
        have = f"{len(examples.train)} training example" + ("" if len(examples.train) == 1 else "s")
        short = sum(examples.skipped.values())
        why = (
            f" {short} imported record{'s were' if short > 1 else ' was'} too short to learn from (a note needs "
            f"{MIN_NOTE_WORDS} words, or a '# title' line above its text)."
            if short
            else ""
        )
        raise MynaError(
            f"Your history gives {have}; training needs at least {minimum} "
            f"({minimum - len(examples.train)} more).{why} Rate good replies (`myna history rate ID good`), correct "
            "bad ones, or import longer writing of your own with `myna import`."
        )


def chat_examples(db: sqlite_utils.Database) -> list[Example]:
    rows = db.execute(
        """SELECT u.text, a.text, f.rating, f.correction, substr(a.created_at, 1, 10), a.conversation_id
           FROM messages a
           JOIN feedback f ON f.message_id = a.id
           JOIN messages u ON u.id = (SELECT MAX(id) FROM messages
                                      WHERE conversation_id = a.conversation_id AND id < a.id AND role = 'user')
           WHERE a.role = 'assistant' AND (f.rating = 1 OR f.correction IS NOT NULL)
           ORDER BY a.id"""
    )
    return [
        Example(user, correction or reply, "chat", date, conversation=conversation)
        for user, reply, rating, correction, date, conversation in rows
    ]


@dataclass(frozen=True)
class Record:
    kind: str
    date: str | None
    text: str
    ids: tuple[int, ...]  # its snippets


def records(db: sqlite_utils.Database) -> list[Record]:
    """Every imported record still in memory, reassembled in order."""
    rows = db.execute(
        """SELECT source_id, record, kind, date, text, id FROM snippets
           WHERE source_id IS NOT NULL ORDER BY source_id, record, position"""
    )
    out: list[Record] = []
    current = None
    for source_id, record, kind, date, text, snippet_id in rows:
        if (source_id, record) == current:
            last = out[-1]
            out[-1] = Record(kind, date, last.text + "\n" + text, last.ids + (snippet_id,))
        else:
            out.append(Record(kind, date, text, (snippet_id,)))
            current = (source_id, record)
    return out


def record_example(kind: str, date: str | None, text: str) -> Example | None:
    """A record as a training pair: in its task's own form when it belongs to one (as OPPU
    does), else the user's writing in their own words; None when it teaches nothing."""
    pair = task_pair(kind, text) if kind != "email" else None
    if pair:
        return Example(pair.input, pair.output, kind, date)
    head, _, rest = text.partition("\n")
    # E-mails and titled notes teach the user's voice (the body), not their subject lines.
    if kind == "email" and head.startswith("Subject: ") and rest.strip():
        return Example(
            f"Write an email with the subject: {head.removeprefix('Subject: ')}", _cap(rest.strip()), kind, date
        )
    if head.startswith("#") and rest.strip():
        return Example(f"Write a note titled: {head.lstrip('#').strip()}", _cap(rest.strip()), kind, date)
    words = text.split()
    if len(words) >= MIN_NOTE_WORDS:
        cut = max(8, len(words) // 4)
        return Example(
            f"Continue this {kind} in my words: {' '.join(words[:cut])}", _cap(" ".join(words[cut:])), kind, date
        )
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


def from_store(
    db: sqlite_utils.Database, *, held_out_fraction: float = 0.2, seed: int = 0, memory: Settings | None = None
) -> ExampleSet:
    """The user's examples, split. With `memory` (the user's settings), each carries what
    recall gives its input from the rest of the history."""
    examples = chat_examples(db)
    skipped: Counter = Counter()
    for record in records(db):
        example = record_example(record.kind, record.date, record.text)
        if example is None:
            skipped[record.kind] += 1
        else:
            examples.append(replace(example, own=record.ids))
    result = split(examples, held_out_fraction=held_out_fraction, seed=seed)
    result.skipped = skipped
    if memory is not None:
        result.train = with_memory(db, result.train, memory)
        result.held_out = with_memory(db, result.held_out, memory)
    return result


def with_memory(db: sqlite_utils.Database, examples: list[Example], settings: Settings) -> list[Example]:
    """Each example with what recall gives its input, as `myna ask` would retrieve it, minus
    its own record (an adapter must learn to use memory, not to look up the answer). An
    example that already carries memory (bench/grounding.py's cloze pairs) keeps it first."""
    from assistant.replies import recall_for

    out = []
    for example in examples:
        found = recall_for(db, settings, example.input, example.conversation, exclude=example.own)
        given = tuple(r.memory for r in found)
        if example.memory:
            given = (example.memory + tuple(m for m in given if m.id not in {g.id for g in example.memory}))[
                : max(settings.retrieval_top_k, 1)
            ]
        out.append(replace(example, memory=given, layout=settings.memory_layout))
    return out
