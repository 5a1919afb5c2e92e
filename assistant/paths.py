"""Where Myna keeps the user's data. One place decides, everything else asks here."""

from __future__ import annotations

import os
from pathlib import Path

from assistant.errors import MynaError

HOME_ENV = "MYNA_HOME"


def data_dir() -> Path:
    """The user's Myna directory: $MYNA_HOME if set, else the platform's user data dir."""
    override = os.environ.get(HOME_ENV)
    if override:
        path = Path(override).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("myna", appauthor=False))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MynaError(
            f"Cannot create Myna's data folder {path} ({exc.strerror}); "
            f"make it writable or point {HOME_ENV} at another folder."
        ) from exc
    return path


def database_path() -> Path:
    return data_dir() / "myna.db"


def subdir(name: str) -> Path:
    """A folder inside the data directory (adapters, cache, exports...), created on demand."""
    path = data_dir() / name
    path.mkdir(parents=True, exist_ok=True)
    return path
