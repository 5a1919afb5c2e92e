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


@migration
def m002_memory(db: sqlite_utils.Database) -> None:
    """Snippets the assistant can retrieve: from imported sources and from chat messages."""
    db.execute(
        """CREATE TABLE IF NOT EXISTS sources (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,                 -- text, markdown, email, jsonl, lamp
            location TEXT NOT NULL,             -- the file's absolute path
            title TEXT NOT NULL DEFAULT '',
            content_hash TEXT NOT NULL UNIQUE,  -- a re-import of the same content adds nothing
            status TEXT NOT NULL DEFAULT 'importing' CHECK (status IN ('importing', 'complete')),
            snippet_count INTEGER NOT NULL DEFAULT 0,
            imported_at TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE IF NOT EXISTS snippets (
            id INTEGER PRIMARY KEY,
            source_id INTEGER REFERENCES sources(id) ON DELETE CASCADE,
            message_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,
            position INTEGER NOT NULL DEFAULT 0,  -- order within its source
            kind TEXT NOT NULL,
            text TEXT NOT NULL,
            date TEXT,
            content_hash TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (source_id, position)
        )"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS snippets_by_hash ON snippets (content_hash)")
    db.execute("CREATE INDEX IF NOT EXISTS snippets_by_message ON snippets (message_id)")
    # Vectors are keyed by the text's hash, so the same text is never embedded twice.
    db.execute(
        """CREATE TABLE IF NOT EXISTS embeddings (
            content_hash TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            vector BLOB NOT NULL               -- little-endian float32
        )"""
    )
    db.execute(
        """CREATE TABLE IF NOT EXISTS message_sources (
            message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            snippet_id INTEGER NOT NULL REFERENCES snippets(id) ON DELETE CASCADE,
            rank INTEGER NOT NULL,
            PRIMARY KEY (message_id, snippet_id)
        )"""
    )
    # Counters that let a process tell, cheaply, whether its in-memory vector index is stale:
    # 'appended' moves on every new snippet, 'changed' on every edit or deletion.
    db.execute("CREATE TABLE IF NOT EXISTS memory_state (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    db.execute("INSERT OR IGNORE INTO memory_state VALUES ('appended', 0), ('changed', 0)")
    db.execute(
        """CREATE VIRTUAL TABLE IF NOT EXISTS snippets_fts USING fts5(
            text, content='snippets', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
        )"""
    )
    db.execute(
        """CREATE TRIGGER IF NOT EXISTS snippets_ai AFTER INSERT ON snippets BEGIN
            INSERT INTO snippets_fts (rowid, text) VALUES (new.id, new.text);
            UPDATE memory_state SET value = value + 1 WHERE key = 'appended';
        END"""
    )
    db.execute(
        """CREATE TRIGGER IF NOT EXISTS snippets_ad AFTER DELETE ON snippets BEGIN
            INSERT INTO snippets_fts (snippets_fts, rowid, text) VALUES ('delete', old.id, old.text);
            DELETE FROM embeddings WHERE content_hash = old.content_hash
                AND NOT EXISTS (SELECT 1 FROM snippets WHERE content_hash = old.content_hash);
            UPDATE memory_state SET value = value + 1 WHERE key = 'changed';
        END"""
    )
    db.execute(
        """CREATE TRIGGER IF NOT EXISTS snippets_au AFTER UPDATE OF text ON snippets BEGIN
            INSERT INTO snippets_fts (snippets_fts, rowid, text) VALUES ('delete', old.id, old.text);
            INSERT INTO snippets_fts (rowid, text) VALUES (new.id, new.text);
            DELETE FROM embeddings WHERE content_hash = old.content_hash
                AND NOT EXISTS (SELECT 1 FROM snippets WHERE content_hash = old.content_hash);
            UPDATE memory_state SET value = value + 1 WHERE key = 'changed';
        END"""
    )


@migration
def m003_records_and_adapters(db: sqlite_utils.Database) -> None:
    """Which record of its source each snippet belongs to (so training examples can be built
    from whole records), and the registry of LoRA adapters with their activation history."""
    if "record" not in db["snippets"].columns_dict:
        db.execute("ALTER TABLE snippets ADD COLUMN record INTEGER")
    db.execute(
        """CREATE TABLE IF NOT EXISTS adapters (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('personal', 'community', 'merged')),
            folder TEXT NOT NULL,               -- holds adapter.gguf (+ PEFT files, card.json)
            base_fingerprint TEXT NOT NULL,
            rank INTEGER NOT NULL,
            alpha REAL NOT NULL,
            targets TEXT NOT NULL,              -- JSON list of GGUF module names
            card TEXT NOT NULL DEFAULT '{}',    -- JSON data card: what went into it, metrics
            created_at TEXT NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE IF NOT EXISTS adapter_activations (
            id INTEGER PRIMARY KEY,
            adapter_id INTEGER REFERENCES adapters(id) ON DELETE SET NULL,
            adapter_name TEXT,                  -- kept when the adapter is deleted later
            at TEXT NOT NULL,
            reason TEXT NOT NULL
        )"""
    )


@migration
def m004_personalization_runs(db: sqlite_utils.Database) -> None:
    """A record of every personalization run: what it merged, how well, how long."""
    db.execute(
        """CREATE TABLE IF NOT EXISTS personalization_runs (
            id INTEGER PRIMARY KEY,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,               -- running, published, no-improvement, skipped, cancelled,
                                                -- failed, interrupted
            pid INTEGER,
            phase TEXT NOT NULL DEFAULT '',
            done INTEGER NOT NULL DEFAULT 0,
            total INTEGER NOT NULL DEFAULT 0,
            adapters TEXT NOT NULL DEFAULT '[]',  -- JSON: the community adapters merged
            weights TEXT NOT NULL DEFAULT '[]',   -- JSON: their merge weights
            fitness_before REAL,
            fitness_after REAL,
            similarity_before REAL,
            similarity_after REAL,
            seconds REAL,
            published TEXT,
            message TEXT NOT NULL DEFAULT '',
            config TEXT NOT NULL DEFAULT '{}'
        )"""
    )


@migration
def m005_memory_hygiene(db: sqlite_utils.Database) -> None:
    """Memories are the user's own words and what they import: forget assistant replies the
    user never vouched for (rated good or corrected; a corrected one is remembered as
    corrected) and the user's questions, which carry no fact (assistant/memory/store.py)."""
    from assistant.hashing import text_hash
    from assistant.memory.store import is_question

    db.execute(
        """DELETE FROM snippets WHERE id IN (
               SELECT s.id FROM snippets s JOIN messages m ON m.id = s.message_id
               LEFT JOIN feedback f ON f.message_id = m.id
               WHERE m.role = 'assistant' AND COALESCE(f.rating, 0) != 1 AND f.correction IS NULL)"""
    )
    corrected = db.execute(
        """SELECT s.id, f.correction FROM snippets s JOIN feedback f ON f.message_id = s.message_id
           WHERE f.correction IS NOT NULL AND s.text != f.correction"""
    ).fetchall()
    for snippet_id, correction in corrected:
        db.execute(
            "UPDATE snippets SET text = ?, content_hash = ? WHERE id = ?",
            (correction, text_hash(correction), snippet_id),
        )
    asked = [
        snippet_id
        for snippet_id, text in db.execute(
            "SELECT s.id, s.text FROM snippets s JOIN messages m ON m.id = s.message_id WHERE m.role = 'user'"
        )
        if is_question(text)
    ]
    db.conn.executemany("DELETE FROM snippets WHERE id = ?", [(i,) for i in asked])


@migration
def m006_snippets_by_record(db: sqlite_utils.Database) -> None:
    """Recall joins a record's snippets for every hit of every answer (store.whole_record):
    without an index that scans the whole source, ~24 ms a hit in a 100,000-snippet import."""
    db.execute("CREATE INDEX IF NOT EXISTS snippets_by_record ON snippets (source_id, record, position)")


@migration
def m007_task_adapters(db: sqlite_utils.Database) -> None:
    """A fourth kind of adapter: a hub's task adapter, the one its community adapters are
    applied on top of. SQLite cannot change a CHECK in place, so the table is copied; dropping
    the old one sets every activation's adapter to NULL (ON DELETE SET NULL, foreign keys are
    on), so the activations' links are kept aside and put back."""
    schema = db.execute("SELECT sql FROM sqlite_master WHERE name = 'adapters'").fetchone()[0]
    if "'task'" in schema:
        return
    links = db.execute("SELECT id, adapter_id FROM adapter_activations WHERE adapter_id IS NOT NULL").fetchall()
    db.execute("DROP TABLE IF EXISTS adapters_new")
    db.execute(
        schema.replace("CREATE TABLE adapters", "CREATE TABLE adapters_new", 1).replace(
            "'community', 'merged')", "'community', 'merged', 'task')"
        )
    )
    db.execute("INSERT INTO adapters_new SELECT * FROM adapters")
    db.execute("DROP TABLE adapters")
    db.execute("ALTER TABLE adapters_new RENAME TO adapters")
    db.conn.executemany("UPDATE adapter_activations SET adapter_id = ? WHERE id = ?", [(a, i) for i, a in links])


@migration
def m008_conversation_settings_and_search(db: sqlite_utils.Database) -> None:
    """A conversation may have its own system prompt and temperature (NULL: the configured
    ones), and conversations are found by the words of their messages (FTS5, with the
    memory's tokenizer, so "tomatoes" finds "tomato")."""
    columns = {column.name for column in db["conversations"].columns}
    for name, kind in (("system_prompt", "TEXT"), ("temperature", "REAL")):
        if name not in columns:
            db.execute(f"ALTER TABLE conversations ADD COLUMN {name} {kind}")
    db.execute(
        """CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(
            text, content='messages', content_rowid='id', tokenize='porter unicode61 remove_diacritics 2'
        )"""
    )
    db.execute(
        """CREATE TRIGGER IF NOT EXISTS messages_ai AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text);
        END"""
    )
    db.execute(
        """CREATE TRIGGER IF NOT EXISTS messages_ad AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
        END"""
    )
    db.execute(
        """CREATE TRIGGER IF NOT EXISTS messages_au AFTER UPDATE OF text ON messages BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
            INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text);
        END"""
    )
    db.execute("INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')")


@migration
def m009_memory_identity(db: sqlite_utils.Database) -> None:
    """A random identity for the memory, so that the vector snapshot beside the database
    (assistant/memory/index.py) is never taken for another database's."""
    db.execute("INSERT OR IGNORE INTO memory_state VALUES ('instance', abs(random()))")


@migration
def m010_run_phase_seconds(db: sqlite_utils.Database) -> None:
    """Where a personalization run's time went: seconds per phase, as JSON, so `myna
    personalize --last` and the benchmark can say which phase to make faster."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(personalization_runs)")}
    if "phase_seconds" not in columns:
        db.execute("ALTER TABLE personalization_runs ADD COLUMN phase_seconds TEXT NOT NULL DEFAULT '{}'")


@migration
def m011_run_inputs(db: sqlite_utils.Database) -> None:
    """A digest of what a finished personalization run started from and the adapter it left
    active, so a night on which nothing changed can skip a search that would find the same."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(personalization_runs)")}
    if "inputs" not in columns:
        db.execute("ALTER TABLE personalization_runs ADD COLUMN inputs TEXT")


@migration
def m012_superseded_memories(db: sqlite_utils.Database) -> None:
    """What the user tells in chat can change ("the standup moved to 10:00"): a memory may be
    superseded by a newer one about the same thing. It stays in history (`myna memory show`
    says what replaced it) but is no longer given to answers as current; deleting the newer
    one makes it current again (ON DELETE SET NULL)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(snippets)")}
    if "superseded_by" not in columns:
        db.execute("ALTER TABLE snippets ADD COLUMN superseded_by INTEGER REFERENCES snippets(id) ON DELETE SET NULL")
    if "superseded_at" not in columns:
        db.execute("ALTER TABLE snippets ADD COLUMN superseded_at TEXT")
    db.execute("CREATE INDEX IF NOT EXISTS snippets_by_successor ON snippets (superseded_by)")
    # What was told in chat is searched apart at every answer (memory/recall.py): without an
    # index that is a scan of every imported snippet too.
    db.execute("CREATE INDEX IF NOT EXISTS snippets_told ON snippets (kind, id) WHERE message_id IS NOT NULL")


@migration
def m013_facts_from_chat(db: sqlite_utils.Database) -> None:
    """What the user said in chat is remembered as what it tells (memory/facts.py), no longer
    as whole messages: a message that mixed a fact with a question was dropped whole, and a
    pure request ("Write a haiku") was kept. Each stored user message is sifted again: its
    first memory keeps its id (so the sources of old replies still point at it) with the new
    text, the others are added, and a message that tells nothing loses its memory. Running it
    again gives the same memories (nothing is duplicated). Updates among these old messages are
    not looked for: that needs the embedder, and a migration must stay cheap."""
    from assistant.hashing import text_hash
    from assistant.memory import told

    rows = db.execute(
        """SELECT m.id, m.text, substr(m.created_at, 1, 10) FROM messages m
           WHERE m.role = 'user' AND m.status != 'failed' ORDER BY m.id"""
    ).fetchall()
    for message_id, text, day in rows:
        said = told.pieces(text)
        existing = [
            row[0]
            for row in db.execute("SELECT id FROM snippets WHERE message_id = ? ORDER BY position, id", (message_id,))
        ]
        if existing and said:
            first = said[0]
            db.execute(
                "UPDATE snippets SET kind = ?, position = 0, date = COALESCE(date, ?) WHERE id = ?",
                (first.kind, day, existing[0]),
            )
            db.execute(  # only when it changed: a new text costs its vector
                "UPDATE snippets SET text = ?, content_hash = ? WHERE id = ? AND text != ?",
                (first.text, text_hash(first.text), existing[0], first.text),
            )
            rest = said[1:]
            stale = existing[1:]
        else:
            rest, stale = said, existing
        db.conn.executemany("DELETE FROM snippets WHERE id = ?", [(i,) for i in stale])
        told.store(db, message_id, rest, date=day, start=1 if existing and said else 0)
