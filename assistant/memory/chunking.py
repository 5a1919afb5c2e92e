"""Splitting long texts into snippets at sensible boundaries.

Paragraphs first, then sentences, then (for a run-on sentence) words. Small neighbours are
merged up to the target so a snippet carries enough context to be found and to be useful.
The embedding model reads at most 256 tokens, about 180 words: snippets stay below that.
"""

from __future__ import annotations

import re

TARGET_WORDS = 120
MIN_WORDS = 25
# Characters bound a snippet too: a text without spaces (a pasted log line, base64) is still
# cut, into "words" of at most LONGEST_WORD characters, at most MAX_CHARS per snippet.
LONGEST_WORD = 200
MAX_CHARS = 2000

_PARAGRAPHS = re.compile(r"\n\s*\n")
_HEADING = re.compile(r"^(#[^\n]*)\n(?=[^\n]*\S)", re.MULTILINE)
_SENTENCES = re.compile(r"(?<=[.!?…])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")


def split(text: str, target: int = TARGET_WORDS) -> list[str]:
    """Snippets of at most `target` words (a few more only when one word is enormous)."""
    pieces: list[tuple[int, str]] = []  # (paragraph number, text)
    text = _HEADING.sub("\\1\n\n", text)  # a "# title" keeps its own line (training reads it as a title)
    for number, paragraph in enumerate(_PARAGRAPHS.split(text)):
        paragraph = " ".join(_short_words(paragraph))
        if not paragraph:
            continue
        if _fits(paragraph, target):
            pieces.append((number, paragraph))
            continue
        for sentence in _SENTENCES.split(paragraph):
            if _fits(sentence, target):
                pieces.append((number, sentence))
            else:
                pieces.extend((number, run) for run in _runs(sentence.split(), target))
    return _merge(pieces, target)


def _short_words(text: str) -> list[str]:
    out = []
    for word in text.split():
        out.extend(word[i : i + LONGEST_WORD] for i in range(0, len(word), LONGEST_WORD))
    return out


def _runs(words: list[str], target: int) -> list[str]:
    """Consecutive words, as many as fit in one snippet at a time."""
    runs, current, chars = [], [], 0
    for word in words:
        if current and (len(current) >= target or chars + len(word) + 1 > MAX_CHARS):
            runs.append(" ".join(current))
            current, chars = [], 0
        current.append(word)
        chars += len(word) + 1
    if current:
        runs.append(" ".join(current))
    return runs


def _fits(text: str, target: int) -> bool:
    return _words(text) <= target and len(text) <= MAX_CHARS


def _merge(pieces: list[tuple[int, str]], target: int) -> list[str]:
    merged: list[tuple[int, str]] = []
    for number, piece in pieces:
        if merged:
            last_number, last = merged[-1]
            fits = _words(last) + _words(piece) <= target and len(last) + len(piece) < MAX_CHARS
            if fits and (_words(last) < MIN_WORDS or _words(piece) < MIN_WORDS or last_number == number):
                joint = " " if last_number == number else "\n"
                merged[-1] = (number, f"{last}{joint}{piece}")
                continue
        merged.append((number, piece))
    return [text for _, text in merged]


def _words(text: str) -> int:
    return len(text.split())
