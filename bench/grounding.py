"""Grounding pairs: cloze questions over the user's notes, each with its note given as memory,
to teach an adapter to answer from what it is given (issue 11). The fact-recall benchmark
(bench/recall.py) measured them: they did not help, so `myna train` does not use them; they
live here so that the measurement can be rerun.
"""

from __future__ import annotations

import hashlib
import re

from assistant.memory.store import Snippet
from assistant.records import task_pair
from merger.data.examples import Example, Record

_CLOZE_WORD = re.compile(r"[A-Za-z0-9][\w'&.:/-]*[A-Za-z0-9]|[A-Za-z0-9]")


def cloze(text: str) -> tuple[str, str] | None:
    """A sentence of `text` with one informative word blanked out, and that word: a word with
    a digit in it (a code, a time, a number) first, else a name inside the sentence, else its
    longest word. None for a text too short to ask about."""
    sentence = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))[0]
    words = [(m.start(), m.end()) for m in _CLOZE_WORD.finditer(sentence)]
    if len(words) < 5:
        return None
    pick = [w for w in words if any(c.isdigit() for c in sentence[w[0] : w[1]])]
    pick = pick or [w for w in words[1:] if sentence[w[0]].isupper()]
    pick = pick or [max(words, key=lambda w: w[1] - w[0])]
    start, end = pick[0]
    return sentence[:start] + "___" + sentence[end:], sentence[start:end]


def grounding_examples(found: list[Record], limit: int, seed: int = 0) -> list[Example]:
    """Cloze pairs over the user's notes, each with its note as the memory given: the model
    learns to answer from what it is given (the fact-recall benchmark measures whether this
    helps, bench/recall.py)."""
    notes = [r for r in found if task_pair(r.kind, r.text) is None]
    notes = sorted(notes, key=lambda r: hashlib.sha256(f"{seed}:{r.ids}".encode()).hexdigest())
    out = []
    for record in notes:
        made = cloze(record.text)
        if made is None:
            continue
        blanked, answer = made
        note = Snippet(record.ids[0], record.text, record.kind, record.date, "", parts=record.ids)
        out.append(
            Example(f'Fill in the blank from my notes: "{blanked}"', answer, "grounding", record.date, memory=(note,))
        )
        if len(out) == limit:
            break
    return out
