"""Files kept beside the database to make a large memory fast (myna.vectors, myna.keywords,
myna.ann): where they go, and what ties each to the database state it was made from.

Each file is stamped with the database's random identity (so a deleted and recreated
myna.db never takes another's file) and its memory_state counters ('appended' moves on every
new snippet, 'changed' on every edit or deletion). A file that lists the snippets it covers
also keeps the first 60 bits of each one's content hash, so an edit is told from a deletion.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generic, TypeVar

import numpy as np
import sqlite_utils

T = TypeVar("T", bound="Stamped")


def database_name(db: sqlite_utils.Database) -> str:
    """The database's file name; empty for a database in memory."""
    return db.execute("PRAGMA database_list").fetchone()[2]


def path_for(db: sqlite_utils.Database, suffix: str) -> Path | None:
    """The file with this suffix beside the database; None for a database in memory."""
    name = database_name(db)
    return Path(name).with_suffix(suffix) if name else None


def state(db: sqlite_utils.Database) -> dict[str, int]:
    """memory_state: 'instance' (0 in a database made before it existed), 'appended', 'changed'."""
    values = {key: int(value) for key, value in db.execute("SELECT key, value FROM memory_state")}
    values.setdefault("instance", 0)
    return values


def hash_prefix(hexdigest: str) -> int:
    return int(hexdigest[:15], 16)


def hash_prefixes(hexdigests: list[str]) -> np.ndarray:
    return np.fromiter((hash_prefix(h) for h in hexdigests), dtype=np.int64, count=len(hexdigests))


def unchanged(db: sqlite_utils.Database, ids: np.ndarray, hashes: np.ndarray, through: int) -> tuple[np.ndarray, set]:
    """(for each covered snippet, whether it is still there with the same text; the ids of
    every snippet up to `through` now in the database)."""
    current = dict(db.execute("SELECT id, content_hash FROM snippets WHERE id <= ?", (through,)).fetchall())
    same = np.fromiter(
        (i in current and hash_prefix(current[i]) == h for i, h in zip(ids.tolist(), hashes.tolist())),
        dtype=bool,
        count=len(ids),
    )
    return same, set(current)


@dataclass
class Stamped:
    """What a file beside the database records about the snippets it covers."""

    instance: int  # the database's random identity when the file was written
    appended: int  # its memory_state counters then
    changed: int
    covered_through: int  # every snippet up to this id is in the file, unless in `others`
    ids: np.ndarray  # int64: the covered snippets, ascending
    hashes: np.ndarray  # int64: hash_prefix of each one's content hash
    others: np.ndarray  # int64: ids up to covered_through the file leaves out (edited since)


class Copies(Generic[T]):
    """A process's copy of one kind of file per database, brought in line with its database on
    each use: a file of another database is removed; one written before an edit or a deletion
    loses the rows that changed (`without(copy, keep)`), and is saved again at once so a
    deleted memory does not outlive its deletion there; an edited snippet goes to `others`."""

    def __init__(
        self,
        suffix: str,
        read: Callable[[Path], T | None],
        save: Callable[[sqlite_utils.Database, T], None],
        without: Callable[[T, np.ndarray], T],
    ) -> None:
        self.suffix, self.read, self.save, self.without = suffix, read, save, without
        self.copies: dict[str, T] = {}
        self.lock = threading.RLock()

    def get(self, db: sqlite_utils.Database) -> T | None:
        """The copy, in line with the database; None when there is no usable file."""
        path = path_for(db, self.suffix)
        if path is None:
            return None
        with self.lock:
            copy = self.reconcile(db, self.copies.get(str(path)) or self.read(path))
            if copy is None:
                self.copies.pop(str(path), None)
            else:
                self.copies[str(path)] = copy
            return copy

    def preload(self, path: Path) -> None:
        """Read the file at `path` now if this process has no copy of it yet, without the
        database (so another thread may do it while the database is in use); the first `get`
        checks it against the database."""
        with self.lock:
            if str(path) not in self.copies and (copy := self.read(path)) is not None:
                self.copies[str(path)] = copy

    def reconcile(self, db: sqlite_utils.Database, copy: T | None) -> T | None:
        if copy is None:
            return None
        now = state(db)
        if copy.instance != now["instance"] or copy.appended > now["appended"]:
            self.drop(db)
            return None
        if copy.changed == now["changed"]:
            return copy
        same, current = unchanged(db, copy.ids, copy.hashes, copy.covered_through)
        present = np.fromiter(current, dtype=np.int64, count=len(current))
        edited = copy.ids[~same & np.isin(copy.ids, present)]
        others = np.union1d(copy.others[np.isin(copy.others, present)], edited).astype(np.int64)
        copy = self.without(copy, same)
        copy.others, copy.appended, copy.changed = others, now["appended"], now["changed"]
        self.save(db, copy)
        return copy

    def keep(self, db: sqlite_utils.Database, copy: T) -> None:
        """Save a newly built copy and use it from now on."""
        self.save(db, copy)
        with self.lock:
            self.copies[str(path_for(db, self.suffix))] = copy

    def stale(self, db: sqlite_utils.Database, share: float) -> bool:
        """Whether there is no file, or it leaves out more than `share` of the snippets (newer
        ones and edited ones): then an import ends by building it again."""
        current = self.get(db)
        if current is None:
            return True
        total = db.execute("SELECT COUNT(*) FROM snippets").fetchone()[0]
        newer = db.execute("SELECT COUNT(*) FROM snippets WHERE id > ?", (current.covered_through,)).fetchone()[0]
        return newer + len(current.others) > share * total

    def drop(self, db: sqlite_utils.Database) -> None:
        """Remove the file and the process's copy."""
        path = path_for(db, self.suffix)
        if path is not None:
            path.unlink(missing_ok=True)
        with self.lock:
            self.copies.pop(str(path), None)

    def prune(self, db: sqlite_utils.Database, minimum: int) -> None:
        """After an edit or a deletion (store.purge): a memory under `minimum` snippets keeps no
        file; a larger one's file loses what changed now."""
        if db.execute("SELECT COUNT(*) FROM snippets").fetchone()[0] < minimum:
            self.drop(db)
        else:
            self.get(db)

    def clear(self) -> None:
        """Forget every copy (the next use reads the file, as a new process would)."""
        with self.lock:
            self.copies.clear()
