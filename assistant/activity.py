"""Whether someone is chatting right now, so that background work can step aside.

A reply being written (in the app or by `myna ask`) holds a marker: an empty file named by
the process id in the data folder's `chatting/`. Background work (the nightly run, training)
checks for live markers between its units of work; a marker whose process is gone (a killed
chat) does not count and is removed by the next check.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from assistant import paths, processes

FOLDER = "chatting"


def _folder() -> Path:
    return paths.data_dir() / FOLDER


def begin() -> None:
    """This process is chatting (idempotent)."""
    folder = _folder()
    folder.mkdir(mode=0o700, exist_ok=True)
    (folder / str(os.getpid())).touch()


def end() -> None:
    """This process has stopped chatting."""
    (_folder() / str(os.getpid())).unlink(missing_ok=True)


@contextmanager
def chatting() -> Iterator[None]:
    begin()
    try:
        yield
    finally:
        end()


def chat_active() -> bool:
    """Whether any live process holds a marker; stale markers are removed on the way."""
    try:
        entries = list(_folder().iterdir())
    except FileNotFoundError:
        return False
    active = False
    for entry in entries:
        if not entry.name.isdigit():
            continue
        if processes.alive(int(entry.name)):
            active = True
        else:
            entry.unlink(missing_ok=True)
    return active
