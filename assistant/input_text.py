"""One policy for every text entering Myna: from the command line, standard input, files,
hub indexes and the app.

Bytes that are not valid UTF-8 (and the lone surrogates Python makes of them) become U+FFFD,
and NUL characters are dropped: the tokenizer, the embedder and SQLite's full-text index all
refuse one or the other. Callers say so to the user when something was replaced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Cleaned:
    text: str
    replaced: int  # characters replaced or dropped

    def notice(self, what: str = "your text") -> str | None:
        return notice(self.replaced, what)


def notice(replaced: int, what: str) -> str | None:
    """What to tell the user when `replaced` characters of `what` were not text."""
    if not replaced:
        return None
    count = "1 character" if replaced == 1 else f"{replaced} characters"
    return f"{count} of {what} could not be read as text and were replaced with {REPLACEMENT}."


def clean(text: str) -> Cleaned:
    if not _SURROGATE.search(text) and "\x00" not in text:
        return Cleaned(text, 0)
    try:
        # Bytes smuggled in by surrogateescape (argv, stdin) get their own replacement each.
        repaired = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        repaired = _SURROGATE.sub(REPLACEMENT, text)  # lone surrogates, e.g. from a JSON "\ud800"
    repaired = repaired.replace("\x00", "")
    changed = len(_SURROGATE.findall(text)) + text.count("\x00")
    return Cleaned(repaired, changed)


def decode(data: bytes) -> Cleaned:
    """Bytes from a pipe or a file that should be UTF-8."""
    text = data.decode("utf-8", "replace")
    cleaned = clean(text)
    return Cleaned(cleaned.text, cleaned.replaced + text.count(REPLACEMENT) - data.count(REPLACEMENT.encode()))


def text(value: str) -> str:
    """The cleaned text alone, where nobody needs telling (a search query, a title)."""
    return clean(value).text
