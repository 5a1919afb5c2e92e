"""Myna's runtime: the store, the model catalogue, prompt building, the llama.cpp engine.

Nothing in this package imports torch: chatting must not pay for the training stack.
"""

import sys


def _load_sqlite_utils_without_pandas() -> None:
    # sqlite-utils imports pandas when it is installed, only to store pandas values, which
    # Myna never does; that import is about 0.15 s of every cold `myna ask` (bench/speed.py).
    # Hide pandas while sqlite-utils loads; anything importing pandas later gets it as usual.
    if "sqlite_utils" in sys.modules or "pandas" in sys.modules:
        return
    sys.modules["pandas"] = None  # type: ignore[assignment]  # makes `import pandas` fail
    try:
        import sqlite_utils.db  # noqa: F401
    finally:
        del sys.modules["pandas"]


_load_sqlite_utils_without_pandas()
