"""Where Myna keeps the user's data. One place decides, everything else asks here.

The data folder is private to the user: created 0700 whatever the umask, and tightened (with
one line on stderr) when an older Myna or a copy left it readable by others. Files inside it
are reachable only through that folder; `make_process_private` also makes every file the
process creates 0600, for the database's -wal/-shm files and for exports outside the folder.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from assistant.errors import MynaError

HOME_ENV = "MYNA_HOME"
PRIVATE_UMASK = 0o077
_checked: set[Path] = set()


def make_process_private() -> None:
    """Files and folders this process creates are the user's alone (0600 / 0700)."""
    os.umask(PRIVATE_UMASK)


def data_dir() -> Path:
    """The user's Myna directory: $MYNA_HOME if set, else the platform's user data dir."""
    override = os.environ.get(HOME_ENV)
    if override:
        path = Path(override).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("myna", appauthor=False))
    if path in _checked and path.is_dir():
        return path
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        tightened = make_private(path)
    except OSError as exc:
        raise MynaError(
            f"Cannot create Myna's data folder {path} ({exc.strerror}); "
            f"make it writable or point {HOME_ENV} at another folder."
        ) from exc
    if tightened:
        print(f"Myna made its data folder {path} private to you (others could read {tightened}).", file=sys.stderr)
    _checked.add(path)
    return path


def make_private(folder: Path) -> int:
    """Take group and other permissions off `folder` and everything in it; how many entries
    had them."""
    changed = 0
    for entry in [folder, *folder.rglob("*")]:
        try:
            mode = entry.lstat().st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(mode) or not mode & 0o077:
            continue
        os.chmod(entry, stat.S_IMODE(mode) & 0o700)
        changed += 1
    return changed


def database_path() -> Path:
    return data_dir() / "myna.db"


def subdir(name: str) -> Path:
    """A folder inside the data directory (adapters, cache, exports...), created on demand."""
    path = data_dir() / name
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


CACHE_ENV = "MYNA_CACHE"


def machine_cache() -> Path:
    """Files derived from public models (not the user's data), shared by every data folder of
    this user on this machine: $MYNA_CACHE if set, else the platform's user cache dir."""
    override = os.environ.get(CACHE_ENV)
    if override:
        path = Path(override).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_cache_dir("myna", appauthor=False))
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path
