"""Opening the database: the only place that creates a connection."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import sqlite_utils

from assistant import paths
from assistant.errors import MynaError
from assistant.store.migrations import migrate

DEFAULT_TIMEOUT_S = 5.0


def open_database(path: Path | None = None, *, timeout: float = DEFAULT_TIMEOUT_S) -> sqlite_utils.Database:
    """Open (creating and migrating if needed) the database at `path`, default the user's.

    Each thread that writes opens its own connection; WAL lets readers and one writer
    work side by side, and `timeout` is how long a writer waits for another one.
    """
    path = Path(path) if path is not None else paths.database_path()
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise MynaError(
            f"Cannot read and write the database {path}; fix its permissions "
            f"(chmod u+rw) or set {paths.HOME_ENV} to another folder."
        )
    try:
        _create_private(path)
        conn = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False)
        conn.execute("PRAGMA foreign_keys = ON")
        # Deleted rows are overwritten, not just unlinked: forgetting must really forget.
        conn.execute("PRAGMA secure_delete = ON")
        conn.execute("PRAGMA journal_mode = WAL")
        check_integrity(conn, path)
        db = sqlite_utils.Database(conn)
        migrate(db)
    except sqlite3.Error as exc:
        raise describe_sqlite_error(exc, path) from exc
    except OSError as exc:
        raise MynaError(
            f"Cannot write to the database {path} ({exc.strerror}); make its folder writable "
            f"or set {paths.HOME_ENV} to another folder."
        ) from None
    return db


# SQLite's quick_check reads every page (about 1 ms per MB here): every open checks a
# database up to this size, a larger one at most once a day.
CHECK_EVERY_OPEN_BYTES = 32 * 2**20
CHECK_INTERVAL_S = 24 * 3600


def check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a damaged database, rather than serve what happens to be readable of it."""
    stamp = path.with_name(path.name + ".checked")
    size = path.stat().st_size if path.exists() else 0
    if size > CHECK_EVERY_OPEN_BYTES and stamp.exists() and time.time() - stamp.stat().st_mtime < CHECK_INTERVAL_S:
        return
    try:
        found = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
    except sqlite3.DatabaseError as exc:  # a page the check itself cannot walk
        if "malformed" not in str(exc):
            raise
        found = [str(exc)]
    if found != ["ok"]:
        lines = [line for row in found for line in row.splitlines() if not line.startswith("***")]
        first = lines[0][:120] if lines else "SQLite's check failed"
        raise MynaError(
            f"{path} is damaged ({first}); Myna will not use it as it is. Save what can be read with "
            f"`sqlite3 {path} .recover | sqlite3 {path.name}.recovered` (the sqlite3 program), move the damaged file aside and put the "
            "recovered one in its place (or restore a backup)."
        )
    if size > CHECK_EVERY_OPEN_BYTES:
        stamp.touch()


def _create_private(path: Path) -> None:
    # SQLite gives its -wal and -shm files the database file's mode, so a database created
    # 0600 keeps the whole history private whatever the umask.
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def describe_sqlite_error(exc: sqlite3.Error, path: Path | None = None) -> MynaError:
    """Turn an SQLite failure into one sentence that says what to do."""
    path = path or paths.database_path()
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return MynaError(
            f"The database {path} is locked by another program; wait for it to finish (or close it) and try again."
        )
    if "not a database" in text or "malformed" in text or "file is encrypted" in text:
        return MynaError(
            f"{path} is not a readable Myna database (it may be damaged); move it aside "
            "and Myna will start a new one, or restore it from a backup."
        )
    if "full" in text:
        return MynaError(
            f"The disk holding {path} is full, so nothing was saved; "
            "free some space and try again (what was stored before is intact)."
        )
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return MynaError(
            f"Cannot write to the database {path}; make its folder writable or set {paths.HOME_ENV} to another folder."
        )
    return MynaError(f"The database {path} reported an error ({exc}); nothing was changed, try again.")
