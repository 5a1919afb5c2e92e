"""Splitting long texts into snippets at sensible boundaries.

Paragraphs first, then sentences, then (for a run-on sentence) words. Small neighbours are
merged up to the target so a snippet carries enough context to be found and to be useful.
The embedding model reads at most 256 tokens, about 180 words: snippets stay below that.
"""

from __future__ import annotations

import re

TARGET_WORDS = 120
MIN_WORDS = 25

_PARAGRAPHS = re.compile(r"\n\s*\n")
_SENTENCES = re.compile(r"(?<=[.!?…])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def split(text: str, target: int = TARGET_WORDS) -> list[str]:
    """Snippets of at most `target` words (a few more only when one word is enormous)."""
    pieces: list[tuple[int, str]] = []  # (paragraph number, text)
    for number, paragraph in enumerate(_PARAGRAPHS.split(text)):
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        if _words(paragraph) <= target:
            pieces.append((number, paragraph))
            continue
        for sentence in _SENTENCES.split(paragraph):
            if _words(sentence) <= target:
                pieces.append((number, sentence))
            else:
                words = sentence.split()
                pieces.extend((number, " ".join(words[i : i + target])) for i in range(0, len(words), target))
    return _merge(pieces, target)


def _merge(pieces: list[tuple[int, str]], target: int) -> list[str]:
    merged: list[tuple[int, str]] = []
    for number, piece in pieces:
        if merged:
            last_number, last = merged[-1]
            fits = _words(last) + _words(piece) <= target
            if fits and (_words(last) < MIN_WORDS or _words(piece) < MIN_WORDS or last_number == number):
                joint = " " if last_number == number else "\n"
                merged[-1] = (number, f"{last}{joint}{piece}")
                continue
        merged.append((number, piece))
    return [text for _, text in merged]


def _words(text: str) -> int:
    return len(text.split())
