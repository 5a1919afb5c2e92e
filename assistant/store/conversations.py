"""Conversations, their messages and the user's feedback on them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlite_utils

from assistant import input_text, processes
from assistant import settings as settings_mod
from assistant.errors import MynaError
from assistant.store.transaction import transaction
from assistant.store.words import keywords, stemmed_terms

TITLE_CHARS = 60


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    created_at: str
    updated_at: str
    message_count: int = 0
    # Its own system prompt and temperature; None: the configured ones (settings.py).
    system_prompt: str | None = None
    temperature: float | None = None


@dataclass(frozen=True)
class Message:
    id: int
    conversation_id: int
    role: str
    text: str
    status: str
    created_at: str
    updated_at: str
    model: str | None = None
    adapter: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    rating: int | None = None
    correction: str | None = None


def title_from(text: str) -> str:
    """A conversation title: the first line of its first message, shortened."""
    line = " ".join(text.strip().split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def create_conversation(db: sqlite_utils.Database, title: str = "") -> int:
    stamp = now()
    with transaction(db):
        cursor = db.execute(
            "INSERT INTO conversations (title, created_at, updated_at) VALUES (?, ?, ?)",
            (title, stamp, stamp),
        )
    return cursor.lastrowid


def list_conversations(db: sqlite_utils.Database, limit: int | None = None) -> list[Conversation]:
    """Most recently active first."""
    sql = """SELECT c.id, c.title, c.created_at, c.updated_at, COUNT(m.id), c.system_prompt, c.temperature
             FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id
             GROUP BY c.id ORDER BY c.updated_at DESC, c.id DESC"""
    params: tuple = ()
    if limit is not None:
        sql += " LIMIT ?"
        params = (limit,)
    return [Conversation(*row) for row in db.execute(sql, params)]


@dataclass(frozen=True)
class Found:
    conversation: Conversation
    excerpt: str  # the best matching message's words around the match; "" for a title match


def search_conversations(db: sqlite_utils.Database, query: str, limit: int = 20) -> list[Found]:
    """Conversations with every word of `query` in their title (first, newest first) or in one
    message (then by BM25 of the best message), words matched as typed so far ("toma" finds
    "tomatoes")."""
    words = keywords(query)
    if not words:
        return []
    found: dict[int, str] = {}
    titles = " AND ".join("lower(title) LIKE ? ESCAPE '\\'" for _ in words)
    escaped = ["%" + w.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for w in words]
    for (conversation_id,) in db.execute(
        f"SELECT id FROM conversations WHERE {titles} ORDER BY updated_at DESC, id DESC", escaped
    ):
        found.setdefault(conversation_id, "")
    stems = [(stemmed_terms(db, word) or [word])[0] for word in words]
    match = " AND ".join('"' + stem.replace('"', '""') + '"*' for stem in stems)
    rows = db.execute(
        """SELECT m.conversation_id, snippet(messages_fts, 0, '', '', '…', 10) FROM messages_fts
           JOIN messages m ON m.id = messages_fts.rowid
           WHERE messages_fts MATCH ? ORDER BY bm25(messages_fts) LIMIT ?""",
        (match, 20 * limit),
    )
    for conversation_id, excerpt in rows:
        found.setdefault(conversation_id, " ".join(excerpt.split()))
    chosen = list(found.items())[:limit]
    return [Found(get_conversation(db, conversation_id), excerpt) for conversation_id, excerpt in chosen]


def get_conversation(db: sqlite_utils.Database, conversation_id: int) -> Conversation:
    row = db.execute(
        """SELECT c.id, c.title, c.created_at, c.updated_at,
                  (SELECT COUNT(*) FROM messages WHERE conversation_id = c.id), c.system_prompt, c.temperature
           FROM conversations c WHERE c.id = ?""",
        (conversation_id,),
    ).fetchone()
    if row is None:
        raise MynaError(f"There is no conversation {conversation_id}; `myna history list` shows the ids.")
    return Conversation(*row)


def latest_conversation_id(db: sqlite_utils.Database) -> int | None:
    found = list_conversations(db, limit=1)
    return found[0].id if found else None


def rename_conversation(db: sqlite_utils.Database, conversation_id: int, title: str) -> None:
    get_conversation(db, conversation_id)
    title = " ".join(input_text.text(title).split())
    if not title:
        raise MynaError("A conversation title cannot be empty; give a few words.")
    with transaction(db):
        db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))


def set_conversation_settings(
    db: sqlite_utils.Database, conversation_id: int, *, system_prompt: str | None, temperature: float | None
) -> Conversation:
    """Give a conversation its own system prompt and temperature, checked like `myna config
    set`; None (or the configured value itself) follows the configuration instead."""
    get_conversation(db, conversation_id)
    configured = settings_mod.load(db)
    values = {}
    for key, value in (("system_prompt", system_prompt), ("temperature", temperature)):
        value = None if value is None else settings_mod.parse(key, str(value))
        values[key] = None if value == getattr(configured, key) else value
    with transaction(db):
        db.execute(
            "UPDATE conversations SET system_prompt = ?, temperature = ? WHERE id = ?",
            (values["system_prompt"], values["temperature"], conversation_id),
        )
    return get_conversation(db, conversation_id)


def delete_conversation(db: sqlite_utils.Database, conversation_id: int) -> None:
    """Delete a conversation with its messages and feedback (foreign keys cascade)."""
    get_conversation(db, conversation_id)
    with transaction(db):
        db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))


def delete_messages(db: sqlite_utils.Database, message_ids: list[int]) -> None:
    """Delete messages with their feedback, memories and sources (foreign keys cascade)."""
    with transaction(db):
        db.conn.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in message_ids])


_MESSAGE_COLUMNS = """m.id, m.conversation_id, m.role, m.text, m.status, m.created_at, m.updated_at,
    m.model, m.adapter, m.prompt_tokens, m.completion_tokens, f.rating, f.correction"""


def messages(db: sqlite_utils.Database, conversation_id: int) -> list[Message]:
    rows = db.execute(
        f"""SELECT {_MESSAGE_COLUMNS} FROM messages m LEFT JOIN feedback f ON f.message_id = m.id
            WHERE m.conversation_id = ? ORDER BY m.id""",
        (conversation_id,),
    )
    return [Message(*row) for row in rows]


def get_message(db: sqlite_utils.Database, message_id: int) -> Message:
    row = db.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages m LEFT JOIN feedback f ON f.message_id = m.id WHERE m.id = ?",
        (message_id,),
    ).fetchone()
    if row is None:
        raise MynaError(f"There is no message {message_id}; `myna history show ID` lists a conversation's messages.")
    return Message(*row)


def add_message(
    db: sqlite_utils.Database,
    conversation_id: int,
    role: str,
    text: str,
    *,
    status: str = "complete",
    model: str | None = None,
    adapter: str | None = None,
    prompt_tokens: int | None = None,
) -> int:
    """Append a message; the conversation's title is set from its first user message."""
    stamp = now()
    pid = os.getpid() if status == "streaming" else None
    with transaction(db):
        cursor = db.execute(
            """INSERT INTO messages (conversation_id, role, text, status, created_at, updated_at,
                                     model, adapter, prompt_tokens, writer_pid)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (conversation_id, role, text, status, stamp, stamp, model, adapter, prompt_tokens, pid),
        )
        db.execute(
            """UPDATE conversations SET updated_at = ?,
                      title = CASE WHEN title = '' AND ? = 'user' THEN ? ELSE title END
               WHERE id = ?""",
            (stamp, role, title_from(text), conversation_id),
        )
    return cursor.lastrowid


def update_message(
    db: sqlite_utils.Database,
    message_id: int,
    *,
    text: str,
    status: str,
    completion_tokens: int | None = None,
) -> None:
    with transaction(db):
        db.execute(
            """UPDATE messages SET text = ?, status = ?, completion_tokens = ?, updated_at = ?,
                      writer_pid = CASE WHEN ? = 'streaming' THEN writer_pid ELSE NULL END
               WHERE id = ?""",
            (text, status, completion_tokens, now(), status, message_id),
        )


def set_feedback(
    db: sqlite_utils.Database,
    message_id: int,
    *,
    rating: int | None = None,
    correction: str | None = None,
) -> None:
    """Record a rating (-1, 0, +1) and/or a corrected text for an assistant message (what
    memory keeps of it follows: assistant.feedback)."""
    message = get_message(db, message_id)
    if message.role != "assistant":
        raise MynaError(f"Message {message_id} is the user's own; only replies can be rated or corrected.")
    if rating is not None and rating not in (-1, 0, 1):
        raise MynaError("A rating is -1 (bad), 0 (neutral) or 1 (good).")
    correction = None if correction is None else input_text.text(correction)
    with transaction(db):
        db.execute(
            """INSERT INTO feedback (message_id, rating, correction, updated_at) VALUES (?, ?, ?, ?)
               ON CONFLICT (message_id) DO UPDATE SET
                   rating = COALESCE(excluded.rating, feedback.rating),
                   correction = COALESCE(excluded.correction, feedback.correction),
                   updated_at = excluded.updated_at""",
            (message_id, rating, correction, now()),
        )


def recover_abandoned_replies(db: sqlite_utils.Database) -> int:
    """Mark replies whose writing process died mid-stream as interrupted; returns how many.

    A reply is saved while it streams, so a killed process leaves its partial text behind
    with status 'streaming'; this makes that state honest again.
    """
    rows = db.execute("SELECT id, writer_pid FROM messages WHERE status = 'streaming'").fetchall()
    dead = [message_id for message_id, pid in rows if not processes.alive(pid)]
    if dead:
        with transaction(db):
            db.conn.executemany(
                "UPDATE messages SET status = 'interrupted', writer_pid = NULL WHERE id = ?",
                [(message_id,) for message_id in dead],
            )
    return len(dead)
