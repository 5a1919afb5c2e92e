"""SHA-256 of files, remembered by (size, mtime) so a large file is hashed once."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

from assistant import paths
from assistant.atomic import atomic_write_text

CHUNK = 1 << 20


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            if on_bytes:
                on_bytes(len(chunk))
    return digest.hexdigest()


def cached_sha256(path: Path) -> str:
    """The file's SHA-256, recomputed only when its size or modification time changed."""
    path = Path(path).resolve()
    stat = path.stat()
    key = str(path)
    stamp = [stat.st_size, stat.st_mtime_ns]
    cache_file = paths.subdir("cache") / "file-hashes.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    entry = cache.get(key)
    if entry and entry.get("stamp") == stamp:
        return entry["sha256"]
    digest = sha256_file(path)
    cache[key] = {"stamp": stamp, "sha256": digest}
    try:
        atomic_write_text(cache_file, json.dumps(cache, indent=1))
    except OSError:
        pass  # a cache that cannot be written only costs a re-hash next time
    return digest
