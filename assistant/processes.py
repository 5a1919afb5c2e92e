"""Whether a process recorded earlier (a reply's writer, a nightly run, a chat) still runs."""

from __future__ import annotations

import os


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process with that id: it runs
    return True
