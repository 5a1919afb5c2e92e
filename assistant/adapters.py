"""The registry of LoRA adapters in the store, and which one is active.

The active adapter is the newest row of `adapter_activations` (a row with no adapter means
"none"), so activating is one insert and the history comes for free. Publishing a new adapter
registers and activates it in one transaction, after its files are complete on disk; a
running chat sees the change before its next reply. No torch here: the chat path reads this.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from assistant import input_text
from assistant.errors import MynaError
from assistant.store.conversations import now
from assistant.store.transaction import transaction

GGUF_NAME = "adapter.gguf"


@dataclass(frozen=True)
class Adapter:
    id: int
    name: str
    kind: str
    folder: Path
    base_fingerprint: str
    rank: int
    alpha: float
    targets: list[str]
    card: dict
    created_at: str

    @property
    def gguf(self) -> Path:
        return self.folder / GGUF_NAME


@dataclass(frozen=True)
class Activation:
    adapter_name: str | None
    at: str
    reason: str


_COLUMNS = "id, name, kind, folder, base_fingerprint, rank, alpha, targets, card, created_at"


def _adapter(row: tuple) -> Adapter:
    id_, name, kind, folder, fingerprint, rank, alpha, targets, card, created = row
    return Adapter(
        id_, name, kind, Path(folder), fingerprint, rank, alpha, json.loads(targets), json.loads(card), created
    )


def listing(db: sqlite_utils.Database) -> list[Adapter]:
    return [_adapter(row) for row in db.execute(f"SELECT {_COLUMNS} FROM adapters ORDER BY id")]


def get(db: sqlite_utils.Database, name: str) -> Adapter:
    row = db.execute(f"SELECT {_COLUMNS} FROM adapters WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise MynaError(f"There is no adapter called '{name}'; `myna adapters list` shows them.")
    return _adapter(row)


def active(db: sqlite_utils.Database) -> Adapter | None:
    row = db.execute("SELECT adapter_id FROM adapter_activations ORDER BY id DESC LIMIT 1").fetchone()
    if row is None or row[0] is None:
        return None
    found = db.execute(f"SELECT {_COLUMNS} FROM adapters WHERE id = ?", (row[0],)).fetchone()
    return _adapter(found) if found else None


def history(db: sqlite_utils.Database, limit: int = 20) -> list[Activation]:
    rows = db.execute("SELECT adapter_name, at, reason FROM adapter_activations ORDER BY id DESC LIMIT ?", (limit,))
    return [Activation(*row) for row in rows]


# An adapter's name becomes a folder name: letters, digits, '.', '_' and '-', never a path.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_name(name: str) -> str:
    if not SAFE_NAME.fullmatch(name):
        raise MynaError(
            f"'{input_text.text(name)}' cannot be an adapter's name: use letters, digits, '.', '_' or '-' "
            "(up to 100, starting with a letter or digit)."
        )
    return name


def unique_name(db: sqlite_utils.Database, stem: str) -> str:
    check_name(stem)
    taken = {row[0] for row in db.execute("SELECT name FROM adapters")}
    if stem not in taken:
        return stem
    number = 2
    while f"{stem}-{number}" in taken:
        number += 1
    return f"{stem}-{number}"


def register(
    db: sqlite_utils.Database,
    *,
    name: str,
    kind: str,
    folder: Path,
    base_fingerprint: str,
    rank: int,
    alpha: float,
    targets: list[str],
    card: dict,
    activate: bool = False,
    reason: str = "",
) -> Adapter:
    """Record an adapter whose files are complete in `folder`; optionally make it active in
    the same transaction, so a crash leaves either the old state or the new one."""
    if not (Path(folder) / GGUF_NAME).is_file():
        raise MynaError(f"{folder} holds no {GGUF_NAME}; the adapter files are incomplete.")
    with transaction(db):
        adapter_id = db.execute(
            """INSERT INTO adapters (name, kind, folder, base_fingerprint, rank, alpha, targets, card, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (name, kind, str(folder), base_fingerprint, rank, alpha, json.dumps(targets), json.dumps(card), now()),
        ).lastrowid
        if activate:
            db.execute(
                "INSERT INTO adapter_activations (adapter_id, adapter_name, at, reason) VALUES (?, ?, ?, ?)",
                (adapter_id, name, now(), reason or f"{kind} adapter published"),
            )
    return get(db, name)


def activate(db: sqlite_utils.Database, name: str | None, reason: str) -> None:
    """Make `name` the active adapter, or None for the bare model."""
    adapter = get(db, name) if name else None
    if adapter and not adapter.gguf.is_file():
        raise MynaError(f"The files of adapter '{name}' are missing from {adapter.folder}; delete it and train again.")
    with transaction(db):
        db.execute(
            "INSERT INTO adapter_activations (adapter_id, adapter_name, at, reason) VALUES (?, ?, ?, ?)",
            (adapter.id if adapter else None, name, now(), reason),
        )


def delete(db: sqlite_utils.Database, name: str) -> None:
    """Delete an adapter and its files; if it was active, the bare model becomes active."""
    adapter = get(db, name)
    current = active(db)
    with transaction(db):
        if current and current.id == adapter.id:
            db.execute(
                "INSERT INTO adapter_activations (adapter_id, adapter_name, at, reason) VALUES (NULL, NULL, ?, ?)",
                (now(), f"'{name}' deleted"),
            )
        db.execute("DELETE FROM adapters WHERE id = ?", (adapter.id,))
    shutil.rmtree(adapter.folder, ignore_errors=True)
