"""Background work that yields to the person at the keyboard.

The nightly run and training are long and CPU-bound; the chat is short and someone waits for
it. On 2 cores both at full tilt starve the chat: llama.cpp's and torch's worker threads spin
while waiting for each other, and oversubscribed cores make them wait a long time. So
background work lowers its own priority once (`lower_priority`, from the `myna personalize`,
`myna train` and `myna hub build` commands), and between its units of work (a candidate merge, a training
step) uses one thread while a reply is being written (`step_aside`; assistant/activity.py
says when), its usual count otherwise. `MYNA_NO_YIELD=1` turns both off, for the benchmark's
baseline (bench/speed.py).
"""

from __future__ import annotations

import os
import sys

from assistant import activity

NICENESS = 10  # below interactive work, above nothing the user started on purpose
NO_YIELD_ENV = "MYNA_NO_YIELD"


def _enabled() -> bool:
    return os.environ.get(NO_YIELD_ENV, "") in ("", "0")


def lower_priority() -> None:
    """Run this process at niceness 10 (never raises it back: an already nicer process stays so)."""
    if not _enabled():
        return
    try:
        current = os.nice(0)
        if current < NICENESS:
            os.nice(NICENESS - current)
    except OSError:
        pass  # a platform without nice: the thread count below still applies


def threads_now(usual: int) -> int:
    """How many threads background work should use at this moment."""
    return 1 if _enabled() and activity.chat_active() else usual


def step_aside() -> int | None:
    """Set torch's thread count for the next unit of work; returns it (None before torch
    is loaded: a run that stops early should not load it for this)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    from assistant.engine import default_threads

    wanted = threads_now(default_threads())
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    return wanted
