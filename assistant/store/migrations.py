"""Schema changes: small named functions, applied once each, in order.

Append new migrations at the end and never edit one that has shipped. Each must be safe to
run again (a crash between a migration and its record reruns it).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

import sqlite_utils

Migration = Callable[[sqlite_utils.Database], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


def applied(db: sqlite_utils.Database) -> set[str]:
    if not db["_migrations"].exists():
        return set()
    return {row[0] for row in db.execute("SELECT name FROM _migrations")}


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply pending migrations; returns the names applied. Cheap when there are none."""
    if all(m.__name__ in applied(db) for m in MIGRATIONS):
        return []
    done: list[str] = []
    conn = db.conn
    # BEGIN IMMEDIATE takes the write lock, so two processes never migrate at once.
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        already = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
        for fn in MIGRATIONS:
            if fn.__name__ in already:
                continue
            fn(db)
            conn.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                (fn.__name__, datetime.now(timezone.utc).isoformat(timespec="seconds")),
            )
            done.append(fn.__name__)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return done


@migration
def m001_conversations(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE IF NOT EXISTS conversations (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE IF NOT EXISTS messages (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
            text TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'complete'
                CHECK (status IN ('complete', 'streaming', 'interrupted', 'failed')),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            model TEXT,
            adapter TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            writer_pid INTEGER
        )"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (conversation_id, id)")
    db.execute(
        """CREATE TABLE IF NOT EXISTS feedback (
            message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
            rating INTEGER CHECK (rating IN (-1, 0, 1)),
            correction TEXT,
            updated_at TEXT NOT NULL
        )"""
    )
    db.execute("CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
