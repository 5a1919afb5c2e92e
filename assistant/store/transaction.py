"""Writes that land together or not at all, and what a failed write leaves behind.

`transaction(db)` nests: an inner one joins the outer, so a function that writes on its own
can also be one step of a larger write (recording a question creates its conversation, both
messages and its memory in one commit, so a full disk leaves no empty conversation).
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Iterator

import sqlite_utils

_open: set[int] = set()  # connections inside an outer transaction


@contextlib.contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[None]:
    conn = db.conn
    if id(conn) in _open:
        yield
        return
    _open.add(id(conn))
    try:
        # An explicit BEGIN: sqlite-utils commits each write of its own at once unless a
        # transaction is open, so `with conn:` alone would not hold several writes together.
        # IMMEDIATE takes the write lock now (waiting for the busy timeout), not mid-way.
        if not conn.in_transaction:
            conn.execute("BEGIN IMMEDIATE")
        yield
        conn.commit()
    except BaseException as exc:
        conn.rollback()
        if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower():
            release_disk(conn)
        raise
    finally:
        _open.discard(id(conn))


def release_disk(conn: sqlite3.Connection) -> None:
    """After a write failed for lack of space, give the write-ahead log's space back: the
    rolled-back pages would otherwise keep the disk full."""
    with contextlib.suppress(sqlite3.Error):
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
