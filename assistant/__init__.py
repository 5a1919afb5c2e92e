"""Myna's runtime: the store, the model catalogue, prompt building, the llama.cpp engine.

Nothing in this package imports torch: chatting must not pay for the training stack.
"""

import sys


def _load_sqlite_utils_lightly() -> None:
    # sqlite-utils imports pandas and NumPy when they are installed, only to map their value
    # types to column types when its insert/upsert API creates tables; Myna writes with SQL
    # alone, so they are never used. Importing them costs every cold `myna ask` (pandas about
    # 0.15 s) and the chat window's first frame (NumPy about 0.05 s; bench/speed.py times
    # both). Hide them while sqlite-utils loads; anything importing them later gets them.
    hidden = [name for name in ("pandas", "numpy") if name not in sys.modules]
    if "sqlite_utils" in sys.modules or not hidden:
        return
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` fail
    try:
        import sqlite_utils.db  # noqa: F401
    finally:
        for name in hidden:
            del sys.modules[name]


_load_sqlite_utils_lightly()
