"""Snippets and their sources in the database: list, show, edit, delete, forget.

Deleting is meant literally: the text, its vector and its full-text index entries go, and the
freed pages are overwritten (the connection runs with secure_delete), so a deleted memory
cannot be read back from the database file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from assistant.errors import MynaError
from assistant.hashing import text_hash
from assistant.store.conversations import now


@dataclass(frozen=True)
class Snippet:
    id: int
    text: str
    kind: str
    date: str | None
    origin: str  # where it came from: a file's name, or "conversation 3"
    source_id: int | None = None
    message_id: int | None = None
    conversation_id: int | None = None


@dataclass(frozen=True)
class Source:
    id: int
    kind: str
    location: str
    title: str
    status: str
    snippet_count: int
    imported_at: str


_SELECT = """SELECT s.id, s.text, s.kind, s.date, src.location, s.source_id, s.message_id, m.conversation_id
FROM snippets s
LEFT JOIN sources src ON src.id = s.source_id
LEFT JOIN messages m ON m.id = s.message_id"""


def _snippet(row: tuple) -> Snippet:
    snippet_id, text, kind, date, location, source_id, message_id, conversation_id = row
    origin = f"conversation {conversation_id}" if message_id is not None else Path(location or "?").name
    return Snippet(snippet_id, text, kind, date, origin, source_id, message_id, conversation_id)


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
    rows = db.execute(
        "SELECT id, kind, location, title, status, snippet_count, imported_at FROM sources ORDER BY id"
    )
    return [Source(*row) for row in rows]


def index_message(db: sqlite_utils.Database, message_id: int, text: str, role: str) -> int | None:
    """Make a chat message retrievable (its vector is computed before the next search)."""
    if not text.strip():
        return None
    with db.conn:
        cursor = db.execute(
            """INSERT INTO snippets (message_id, kind, text, date, content_hash, created_at)
               VALUES (?, ?, ?, date('now'), ?, ?)""",
            (message_id, f"chat {role}", text, text_hash(text), now()),
        )
    return cursor.lastrowid


def edit(db: sqlite_utils.Database, snippet_id: int, text: str) -> None:
    get(db, snippet_id)
    if not text.strip():
        raise MynaError("A memory cannot be made empty; delete it with `myna memory delete ID` instead.")
    with db.conn:
        db.execute("UPDATE snippets SET text = ?, content_hash = ? WHERE id = ?", (text, text_hash(text), snippet_id))
    purge(db)


def delete(db: sqlite_utils.Database, snippet_ids: list[int]) -> int:
    """Delete snippets with their vectors and index entries; returns how many were deleted."""
    missing = set(snippet_ids) - {s.id for s in get_many(db, snippet_ids)}
    if missing:
        raise MynaError(f"There is no memory {min(missing)}; `myna memory list` shows the ids.")
    with db.conn:
        db.conn.executemany("DELETE FROM snippets WHERE id = ?", [(i,) for i in snippet_ids])
        db.execute("UPDATE sources SET snippet_count = (SELECT COUNT(*) FROM snippets WHERE source_id = sources.id)")
        db.execute("DELETE FROM sources WHERE status = 'complete' AND snippet_count = 0")
    purge(db)
    return len(snippet_ids)


def delete_source(db: sqlite_utils.Database, source_id: int) -> int:
    """Delete an imported file's snippets and its record; returns how many snippets went."""
    row = db.execute("SELECT COUNT(*) FROM snippets WHERE source_id = ?", (source_id,)).fetchone()
    with db.conn:
        db.execute("DELETE FROM sources WHERE id = ?", (source_id,))
    purge(db)
    return row[0]


def forget_everything(db: sqlite_utils.Database) -> int:
    """Delete every memory (imported and from chats); conversations themselves stay."""
    total = count(db)
    with db.conn:
        db.execute("DELETE FROM snippets")
        db.execute("DELETE FROM sources")
        db.execute("DELETE FROM embeddings")
    purge(db)
    return total


def purge(db: sqlite_utils.Database) -> None:
    """Make deletions final: merge the full-text index (dropping deleted entries) and empty
    the write-ahead log, which may still hold old copies of changed pages."""
    with db.conn:
        db.execute("INSERT INTO snippets_fts (snippets_fts) VALUES ('optimize')")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def record_used(db: sqlite_utils.Database, message_id: int, snippet_ids: list[int]) -> None:
    """Remember which snippets an answer was given, in rank order."""
    with db.conn:
        db.conn.executemany(
            "INSERT OR IGNORE INTO message_sources (message_id, snippet_id, rank) VALUES (?, ?, ?)",
            [(message_id, snippet_id, rank) for rank, snippet_id in enumerate(snippet_ids, start=1)],
        )


def used_by(db: sqlite_utils.Database, message_id: int) -> list[Snippet]:
    ids = [row[0] for row in db.execute(
        "SELECT snippet_id FROM message_sources WHERE message_id = ? ORDER BY rank", (message_id,)
    )]
    return get_many(db, ids)
