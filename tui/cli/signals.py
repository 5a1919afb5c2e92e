"""Ctrl-C as a polite request: long work stops at its next safe point."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


@contextlib.contextmanager
def ctrl_c_stops() -> Iterator[threading.Event]:
    """The first Ctrl-C sets the event (the work stops cleanly at its next check); a second
    one interrupts at once."""
    stop = threading.Event()

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
