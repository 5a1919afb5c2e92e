"""Snippets and their sources in the database: list, show, edit, delete, forget.

Deleting is meant literally: the text, its vector and its full-text index entries go, and the
freed pages are overwritten (the connection runs with secure_delete), so a deleted memory
cannot be read back from the database file.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import sqlite_utils

from assistant import input_text
from assistant.errors import MynaError
from assistant.hashing import text_hash
from assistant.store.conversations import now
from assistant.store.transaction import transaction


@dataclass(frozen=True)
class Snippet:
    id: int
    text: str
    kind: str
    date: str | None
    origin: str  # where it came from: a file's name, or a chat's title ('chat "Tomatoes"')
    source_id: int | None = None
    message_id: int | None = None
    conversation_id: int | None = None
    record: int | None = None  # which record of its source the snippet is part of
    parts: tuple[int, ...] = ()  # when `text` is a whole record: the ids of all its snippets
    superseded_by: int | None = None  # a newer memory about the same thing (memory/told.py)
    position: int = 0  # its place among its source's (or its message's) snippets

    @property
    def ids(self) -> tuple[int, ...]:
        """Every snippet this memory's text is made of."""
        return self.parts or (self.id,)

    def preview(self, width: int = 90) -> str:
        """Its text on one line, cut to `width` characters."""
        return one_line(self.text, width)


def one_line(text: str, width: int) -> str:
    """`text` on one line, cut to `width` characters."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def describe(snippet: Snippet) -> str:
    """A memory's heading wherever memories are listed: its id, kind, date, where it came from,
    and whether a newer one replaced it."""
    head = f"[{snippet.id}] {snippet.kind}, {snippet.date or 'undated'}, from {snippet.origin}"
    return head + (f" (replaced by [{snippet.superseded_by}])" if snippet.superseded_by is not None else "")


@dataclass(frozen=True)
class Source:
    id: int
    kind: str
    location: str
    title: str
    status: str
    snippet_count: int
    imported_at: str


_SELECT = """SELECT s.id, s.text, s.kind, s.date, src.location, s.source_id, s.message_id, m.conversation_id, s.record,
    c.title, s.superseded_by, s.position
FROM snippets s
LEFT JOIN sources src ON src.id = s.source_id
LEFT JOIN messages m ON m.id = s.message_id
LEFT JOIN conversations c ON c.id = m.conversation_id"""


def _origin(location: str | None, message_id: int | None, conversation_id: int | None, title: str | None) -> str:
    """Where a snippet came from, as a person would name it: the chat's title, or the file's name."""
    if message_id is None:
        return Path(location or "?").name
    return f'chat "{title}"' if title else f"conversation {conversation_id}"


def _snippet(row: tuple) -> Snippet:
    (
        snippet_id,
        text,
        kind,
        date,
        location,
        source_id,
        message_id,
        conversation_id,
        record,
        title,
        successor,
        position,
    ) = row
    origin = _origin(location, message_id, conversation_id, title)
    return Snippet(
        snippet_id,
        text,
        kind,
        date,
        origin,
        source_id,
        message_id,
        conversation_id,
        record,
        superseded_by=successor,
        position=position,
    )


def get_many(db: sqlite_utils.Database, ids: list[int]) -> list[Snippet]:
    """The snippets with these ids, in the order given (missing ones left out)."""
    if not ids:
        return []
    marks = ",".join("?" * len(ids))
    found = {row[0]: _snippet(row) for row in db.execute(f"{_SELECT} WHERE s.id IN ({marks})", list(ids))}
    return [found[i] for i in ids if i in found]


def get(db: sqlite_utils.Database, snippet_id: int) -> Snippet:
    found = get_many(db, [snippet_id])
    if not found:
        raise MynaError(f"There is no memory {snippet_id}; `myna memory list` shows the ids.")
    return found[0]


def listing(db: sqlite_utils.Database, *, limit: int = 50, offset: int = 0, kind: str | None = None) -> list[Snippet]:
    where, params = ("WHERE s.kind = ?", [kind]) if kind else ("", [])
    rows = db.execute(f"{_SELECT} {where} ORDER BY s.id DESC LIMIT ? OFFSET ?", [*params, limit, offset])
    return [_snippet(row) for row in rows]


def count(db: sqlite_utils.Database) -> int:
    return db.execute("SELECT COUNT(*) FROM snippets").fetchone()[0]


def sources(db: sqlite_utils.Database) -> list[Source]:
    rows = db.execute("SELECT id, kind, location, title, status, snippet_count, imported_at FROM sources ORDER BY id")
    return [Source(*row) for row in rows]


_ASKING = frozenset(
    "what who whom whose where when why how which is are am was were do does did can could would should will shall may".split()
)


def is_question(text: str) -> bool:
    """A question carries nothing to remember, and remembered it would be found again as the
    best match for itself: "What is my sister allergic to?" is not a fact about her. (Migration
    m005's test; what a message tells is now sifted sentence by sentence, memory/facts.py.)"""
    words = text.split()
    if not words:
        return False
    if text.rstrip().endswith("?"):
        return True
    return "\n" not in text.strip() and len(words) <= 30 and words[0].lower().strip("\"'(") in _ASKING


def remember_reply(db: sqlite_utils.Database, message_id: int) -> None:
    """Keep the memory of an assistant reply in step with the user's feedback: a reply is
    remembered only when the user rated it good or corrected it, and then as corrected."""
    row = db.execute(
        """SELECT m.text, f.rating, f.correction FROM messages m LEFT JOIN feedback f ON f.message_id = m.id
           WHERE m.id = ? AND m.role = 'assistant'""",
        (message_id,),
    ).fetchone()
    if row is None:
        return
    text, rating, correction = row
    keep = correction if correction is not None else (text if rating == 1 else None)
    if keep is None or not keep.strip():
        with transaction(db):
            gone = db.execute("DELETE FROM snippets WHERE message_id = ?", (message_id,)).rowcount
        if gone:
            purge(db)
        return
    _put_message_snippet(db, message_id, keep, "chat assistant")


def _put_message_snippet(db: sqlite_utils.Database, message_id: int, text: str, kind: str) -> int:
    existing = db.execute("SELECT id, text FROM snippets WHERE message_id = ?", (message_id,)).fetchone()
    with transaction(db):
        if existing:
            if existing[1] != text:
                db.execute(
                    "UPDATE snippets SET text = ?, content_hash = ? WHERE id = ?", (text, text_hash(text), existing[0])
                )
            return existing[0]
        cursor = db.execute(
            """INSERT INTO snippets (message_id, kind, text, date, content_hash, created_at)
               VALUES (?, ?, ?, date('now'), ?, ?)""",
            (message_id, kind, text, text_hash(text), now()),
        )
    return cursor.lastrowid


def edit(db: sqlite_utils.Database, snippet_id: int, text: str) -> None:
    get(db, snippet_id)
    text = input_text.text(text)
    if not text.strip():
        raise MynaError("A memory cannot be made empty; delete it with `myna memory delete ID` instead.")
    with transaction(db):
        db.execute("UPDATE snippets SET text = ?, content_hash = ? WHERE id = ?", (text, text_hash(text), snippet_id))
    purge(db)


def edit_memory(db: sqlite_utils.Database, memory: Snippet, text: str) -> None:
    """Replace what a memory says; a whole record becomes one snippet with the new text."""
    edit(db, memory.id, text)
    if len(memory.ids) > 1:
        delete(db, [i for i in memory.ids if i != memory.id])


def delete(db: sqlite_utils.Database, snippet_ids: list[int]) -> int:
    """Delete snippets with their vectors and index entries; returns how many were deleted."""
    missing = set(snippet_ids) - {s.id for s in get_many(db, snippet_ids)}
    if missing:
        raise MynaError(f"There is no memory {min(missing)}; `myna memory list` shows the ids.")
    with transaction(db):
        db.conn.executemany("DELETE FROM snippets WHERE id = ?", [(i,) for i in snippet_ids])
        db.execute("UPDATE sources SET snippet_count = (SELECT COUNT(*) FROM snippets WHERE source_id = sources.id)")
        db.execute("DELETE FROM sources WHERE status = 'complete' AND snippet_count = 0")
    purge(db)
    return len(snippet_ids)


def delete_source(db: sqlite_utils.Database, source_id: int) -> int:
    """Delete an imported file's snippets and its record; returns how many snippets went."""
    row = db.execute("SELECT COUNT(*) FROM snippets WHERE source_id = ?", (source_id,)).fetchone()
    with transaction(db):
        db.execute("DELETE FROM sources WHERE id = ?", (source_id,))
    purge(db)
    return row[0]


def forget_everything(db: sqlite_utils.Database) -> int:
    """Delete every memory (imported and from chats); conversations themselves stay."""
    total = count(db)
    with transaction(db):
        db.execute("DELETE FROM snippets")
        db.execute("DELETE FROM sources")
        db.execute("DELETE FROM embeddings")
    purge(db)
    return total


def purge(db: sqlite_utils.Database) -> None:
    """Make deletions final: merge the full-text index (dropping deleted entries) and empty
    the write-ahead log, which may still hold old copies of changed pages, and drop the
    vector snapshot, which may hold the deleted snippets' vectors; the keyword index loses
    the deleted and edited snippets' words, the approximate vector index their vectors."""
    from assistant.memory import ann, index, keywords

    index.drop_snapshot(db)
    with transaction(db):
        db.execute("INSERT INTO snippets_fts (snippets_fts) VALUES ('optimize')")
    keywords.prune(db)
    ann.prune(db)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def whole_record(db: sqlite_utils.Database, snippet: Snippet, max_words: int) -> Snippet:
    """The record `snippet` is part of (a note, an e-mail, a profile item), whole, when it has
    at most `max_words` words; otherwise the snippet itself (a passage of a long document)."""
    if snippet.source_id is None or snippet.record is None:
        return snippet
    rows = db.execute(
        "SELECT id, text FROM snippets WHERE source_id = ? AND record = ? ORDER BY position",
        (snippet.source_id, snippet.record),
    ).fetchall()
    if len(rows) <= 1 or sum(len(text.split()) for _, text in rows) > max_words:
        return snippet
    return replace(snippet, id=rows[0][0], text="\n".join(text for _, text in rows), parts=tuple(i for i, _ in rows))


def record_used(db: sqlite_utils.Database, message_id: int, memories: list[Snippet]) -> None:
    """Remember what an answer was given, in rank order (a whole record: all its snippets)."""
    with transaction(db):
        db.conn.executemany(
            "INSERT OR IGNORE INTO message_sources (message_id, snippet_id, rank) VALUES (?, ?, ?)",
            [
                (message_id, snippet_id, rank)
                for rank, memory in enumerate(memories, start=1)
                for snippet_id in memory.ids
            ],
        )


def used_by(db: sqlite_utils.Database, message_id: int) -> list[Snippet]:
    """What an answer was given, as it was given: snippets of one record joined again."""
    ranked: dict[int, list[int]] = {}
    for snippet_id, rank in db.execute(
        "SELECT snippet_id, rank FROM message_sources WHERE message_id = ? ORDER BY rank, snippet_id", (message_id,)
    ):
        ranked.setdefault(rank, []).append(snippet_id)
    found = {s.id: s for s in get_many(db, [i for ids in ranked.values() for i in ids])}
    out = []
    for ids in ranked.values():
        parts = [found[i] for i in ids if i in found]
        if len(parts) == 1:
            out.append(parts[0])
        elif parts:
            out.append(replace(parts[0], text="\n".join(p.text for p in parts), parts=tuple(p.id for p in parts)))
    return out
