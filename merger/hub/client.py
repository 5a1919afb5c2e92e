"""Community adapter hubs: a folder or an http(s) URL holding index.json and adapter files.

Pulling verifies everything before anything is installed: the base model's fingerprint (from
the index, before downloading), the file's size and SHA-256, its format (GGUF or safetensors
only, never pickle) and its shapes against the base model. Downloads resume where they
stopped (HTTP Range), and a damaged download is thrown away.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import sqlite_utils

from assistant import adapters, paths
from assistant.errors import MynaError
from assistant.hashing import sha256_file
from merger.formats import bridge
from merger.formats.base_model import Architecture

INDEX = "index.json"
FORMAT = "myna-hub/1"
CHUNK = 1 << 16
ATTEMPTS = 3
Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


@dataclass(frozen=True)
class Entry:
    name: str
    description: str
    file: str  # relative to the hub
    sha256: str
    size: int
    base_fingerprint: str
    rank: int
    alpha: float
    targets: list[str]
    license: str
    data_card: dict = field(default_factory=dict)
    profile_vector: list[float] | None = None


@dataclass(frozen=True)
class Hub:
    location: str
    name: str
    entries: list[Entry]

    def find(self, name: str) -> Entry:
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise MynaError(
            f"The hub at {self.location} has no adapter called '{name}'; `myna adapters search` lists them."
        )


def is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def open_hub(location: str) -> Hub:
    """Read a hub's index; MynaError says what is wrong with it."""
    try:
        if is_url(location):
            with urllib.request.urlopen(location.rstrip("/") + "/" + INDEX, timeout=30) as response:
                raw = response.read()
        else:
            raw = (Path(location).expanduser() / INDEX).read_bytes()
    except (OSError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise MynaError(f"Cannot read the hub index at {location} ({reason}); check the address or folder.") from None
    try:
        data = json.loads(raw)
        if data.get("format") != FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
        entries = [Entry(**item) for item in data["adapters"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise MynaError(f"The hub index at {location} is not valid ({exc}).") from None
    return Hub(location=location, name=data.get("name", location), entries=entries)


def search(hub: Hub, query: str = "") -> list[Entry]:
    words = query.lower().split()
    return [e for e in hub.entries if all(w in f"{e.name} {e.description}".lower() for w in words)]


def pull(
    db: sqlite_utils.Database, hub: Hub, name: str, arch: Architecture, on_progress: Progress | None = None
) -> adapters.Adapter:
    """Download, verify and install one adapter (not activated)."""
    entry = hub.find(name)
    if entry.base_fingerprint != arch.fingerprint:
        raise MynaError(
            f"'{name}' was made for another base model (fingerprint {entry.base_fingerprint[:12]}, yours is "
            f"{arch.fingerprint[:12]}); it cannot be used with your model, so nothing was downloaded."
        )
    suffix = Path(entry.file).suffix.lower()
    if suffix not in (".gguf", ".safetensors"):
        raise MynaError(f"'{name}' is offered as a '{suffix}' file; Myna installs only GGUF or safetensors adapters.")
    if any(a.name == name for a in adapters.listing(db)):
        raise MynaError(f"An adapter called '{name}' is installed already; remove it first to pull it again.")
    partial = paths.subdir("downloads") / f"{entry.sha256}{suffix}.partial"
    _download(hub, entry, partial, on_progress)
    if partial.stat().st_size != entry.size:
        size = partial.stat().st_size
        partial.unlink()
        raise MynaError(f"'{name}' arrived with {size} bytes instead of {entry.size}; it was thrown away, try again.")
    if sha256_file(partial) != entry.sha256:
        partial.unlink()
        raise MynaError(
            f"'{name}' failed its checksum: the download was damaged or the hub serves a different file. "
            "It was thrown away; nothing was installed."
        )
    complete = partial.with_name(f"{entry.sha256}{suffix}")
    partial.rename(complete)
    try:
        lora = bridge.load(complete, arch)  # format, shapes and base model, before installing
        from merger.formats.publish import publish

        card = {
            **entry.data_card,
            "kind": "community",
            "hub": hub.location,
            "license": entry.license,
            "description": entry.description,
            "sha256": entry.sha256,
        }
        if entry.profile_vector:
            card["profile_vector"] = entry.profile_vector
        return publish(
            db, lora, arch, stem=name, kind="community", card=card, activate=False, reason=f"pulled from {hub.location}"
        )
    finally:
        complete.unlink(missing_ok=True)


def _download(hub: Hub, entry: Entry, partial: Path, on_progress: Progress | None) -> None:
    last_error = None
    for _ in range(ATTEMPTS):
        have = partial.stat().st_size if partial.exists() else 0
        if have >= entry.size:
            return
        try:
            if is_url(hub.location):
                _fetch_http(hub.location.rstrip("/") + "/" + entry.file, partial, have, entry.size, on_progress)
            else:
                _copy_local(Path(hub.location).expanduser() / entry.file, partial, have, entry.size, on_progress)
            return
        except (OSError, urllib.error.URLError) as exc:
            last_error = getattr(exc, "reason", None) or exc
    done = partial.stat().st_size if partial.exists() else 0
    raise MynaError(
        f"The download of '{entry.name}' stopped at {done:,} of {entry.size:,} bytes ({last_error}); "
        "run the same command again to resume it."
    )


def _fetch_http(url: str, partial: Path, have: int, size: int, on_progress: Progress | None) -> None:
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        if have and response.status != 206:
            have = 0  # the server ignored the range: start over
        with open(partial, "ab" if have else "wb") as out:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                have += len(chunk)
                if on_progress:
                    on_progress(have, size)
            out.flush()
    if have < size:
        raise OSError(f"the connection closed after {have:,} bytes")


def _copy_local(source: Path, partial: Path, have: int, size: int, on_progress: Progress | None) -> None:
    with open(source, "rb") as src, open(partial, "ab") as out:
        src.seek(have)
        while chunk := src.read(CHUNK):
            out.write(chunk)
            have += len(chunk)
            if on_progress:
                on_progress(have, size)


def remove(db: sqlite_utils.Database, name: str) -> None:
    adapter = adapters.get(db, name)
    if adapter.kind != "community":
        raise MynaError(f"'{name}' is a {adapter.kind} adapter, not a community one; use `myna adapters delete`.")
    adapters.delete(db, name)


def write_index(folder: Path, name: str, entries: list[Entry]) -> Path:
    from dataclasses import asdict

    from assistant.atomic import atomic_write_text

    payload = {"format": FORMAT, "name": name, "adapters": [asdict(e) for e in entries]}
    atomic_write_text(folder / INDEX, json.dumps(payload, indent=1) + "\n")
    return folder / INDEX
