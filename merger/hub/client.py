"""Community adapter hubs: a folder or an http(s) URL holding index.json and adapter files.

Pulling verifies everything before anything is installed: the base model's fingerprint (from
the index, before downloading), the file's size and SHA-256, its format (GGUF or safetensors
only, never pickle) and its shapes against the base model. Downloads resume where they
stopped (HTTP Range), and a damaged download is thrown away.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import sqlite_utils

from assistant import adapters, input_text, paths
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
    kind: str = "community"  # or "task": the adapter the others were trained on top of
    task_adapter: str | None = None  # the name of the hub's task adapter this one is applied on top of


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
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"format is {found!r}, expected {FORMAT!r}")
        if not isinstance(data.get("adapters"), list):
            raise ValueError("it has no list of adapters")
        entries = [_entry(item, number) for number, item in enumerate(data["adapters"], start=1)]
        names = [entry.name for entry in entries]
        if len(set(names)) != len(names):
            raise ValueError("two adapters have the same name")
        tasks = {entry.name for entry in entries if entry.kind == "task"}
        for entry in entries:
            if entry.task_adapter is not None and entry.task_adapter not in tasks:
                raise ValueError(f"'{entry.name}' is applied on top of '{entry.task_adapter}', not a task adapter here")
    except (ValueError, RecursionError) as exc:
        raise MynaError(f"The hub index at {location} is not valid ({input_text.text(str(exc))}).") from None
    name = data.get("name") if isinstance(data.get("name"), str) else location
    return Hub(location=location, name=input_text.text(name)[:200], entries=entries)


# What an index may say, field by field: a hub is untrusted, so nothing it names is used as a
# path or a URL until it is known to be a plain name, a digest or a relative file inside it.
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FILE_PART = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")
_TYPES = {
    "name": str,
    "description": str,
    "file": str,
    "sha256": str,
    "size": int,
    "base_fingerprint": str,
    "rank": int,
    "alpha": (int, float),
    "targets": list,
    "license": str,
    "data_card": dict,
    "profile_vector": (list, type(None)),
    "kind": str,
    "task_adapter": (str, type(None)),
}
_OPTIONAL = {"data_card", "profile_vector", "kind", "task_adapter"}
KINDS = ("community", "task")


def _entry(item: object, number: int) -> Entry:
    if not isinstance(item, dict):
        raise ValueError(f"adapter {number} is not an object")
    label = f"adapter {number}"
    if set(item) - set(_TYPES):
        raise ValueError(f"{label} has unknown fields: {', '.join(sorted(map(str, set(item) - set(_TYPES))))}")
    for key, kind in _TYPES.items():
        if key not in item and key not in _OPTIONAL:
            raise ValueError(f"{label} has no {key}")
        if key in item and (not isinstance(item[key], kind) or isinstance(item[key], bool)):
            raise ValueError(f"{label}: {key} has the wrong type")
    if not adapters.SAFE_NAME.fullmatch(item["name"]):
        raise ValueError(f"{label}: its name must be letters, digits, '.', '_' or '-' (up to 100)")
    if item.get("kind", "community") not in KINDS:
        raise ValueError(f"{label}: kind must be {' or '.join(KINDS)}")
    below = item.get("task_adapter")
    if below is not None and (not adapters.SAFE_NAME.fullmatch(below) or item.get("kind") == "task"):
        raise ValueError(f"{label}: task_adapter must name the hub's task adapter, and a task adapter has none")
    label = f"adapter '{item['name']}'"
    if not (_SHA256.fullmatch(item["sha256"]) and _SHA256.fullmatch(item["base_fingerprint"])):
        raise ValueError(f"{label}: sha256 and base_fingerprint must be 64 lowercase hexadecimal digits")
    if not all(_FILE_PART.fullmatch(part) for part in item["file"].split("/")) or item["file"].count("/") > 4:
        raise ValueError(f"{label}: file must be a relative path inside the hub, like adapters/name.gguf")
    if not 0 < item["size"] < 1 << 34 or not 0 < item["rank"] <= 4096:
        raise ValueError(f"{label}: its size or rank is impossible")
    if not all(isinstance(t, str) and adapters.SAFE_NAME.fullmatch(t) for t in item["targets"]):
        raise ValueError(f"{label}: targets must be module names")
    vector = item.get("profile_vector")
    if vector is not None and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vector):
        raise ValueError(f"{label}: profile_vector must be numbers")
    text = {key: input_text.text(item[key])[:2000] for key in ("description", "license")}
    return Entry(**{**item, **text, "alpha": float(item["alpha"])})


def search(hub: Hub, query: str = "") -> list[Entry]:
    words = query.lower().split()
    return [e for e in hub.entries if all(w in f"{e.name} {e.description}".lower() for w in words)]


def pull(
    db: sqlite_utils.Database, hub: Hub, name: str, arch: Architecture, on_progress: Progress | None = None
) -> adapters.Adapter:
    """Download, verify and install one adapter (not activated); and first, when it is applied
    on top of the hub's task adapter, that task adapter, unless it is installed already."""
    entry = hub.find(name)
    _check_offer(entry, arch)
    if any(a.name == name for a in adapters.listing(db)):
        raise MynaError(f"An adapter called '{name}' is installed already; remove it first to pull it again.")
    card = {}
    if entry.task_adapter:
        below = hub.find(entry.task_adapter)
        _check_offer(below, arch)
        card = {"task_adapter": below.name, "task_adapter_sha256": below.sha256}
        if task_adapter(db, below.sha256) is None:
            _install(db, hub, below, arch, on_progress, {})
    return _install(db, hub, entry, arch, on_progress, card)


def task_adapter(db: sqlite_utils.Database, sha256: str) -> adapters.Adapter | None:
    """The installed task adapter with this checksum (the one a community adapter names)."""
    return next((a for a in adapters.listing(db) if a.kind == "task" and a.card.get("sha256") == sha256), None)


def _check_offer(entry: Entry, arch: Architecture) -> None:
    """What the index says about an adapter, checked before anything is downloaded."""
    if entry.base_fingerprint != arch.fingerprint:
        raise MynaError(
            f"'{entry.name}' was made for another base model (fingerprint {entry.base_fingerprint[:12]}, yours is "
            f"{arch.fingerprint[:12]}); it cannot be used with your model, so nothing was downloaded."
        )
    suffix = Path(entry.file).suffix.lower()
    if suffix not in (".gguf", ".safetensors"):
        raise MynaError(
            f"'{entry.name}' is offered as a '{suffix}' file; Myna installs only GGUF or safetensors adapters."
        )


def _install(
    db: sqlite_utils.Database, hub: Hub, entry: Entry, arch: Architecture, on_progress: Progress | None, extra: dict
) -> adapters.Adapter:
    name, suffix = entry.name, Path(entry.file).suffix.lower()
    partial = paths.subdir("downloads") / f"{entry.sha256}{suffix}.partial"  # a digest: a plain name
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
            **extra,
            "kind": entry.kind,
            "hub": hub.location,
            "license": entry.license,
            "description": entry.description,
            "sha256": entry.sha256,
        }
        if entry.profile_vector:
            card["profile_vector"] = entry.profile_vector
        return publish(
            db, lora, arch, stem=name, kind=entry.kind, card=card, activate=False, reason=f"pulled from {hub.location}"
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
                url = hub.location.rstrip("/") + "/" + urllib.parse.quote(entry.file)
                _fetch_http(url, partial, have, entry.size, on_progress)
            else:
                _copy_local(_inside_hub(hub, entry), partial, have, entry.size, on_progress)
            return
        except (OSError, urllib.error.URLError) as exc:
            last_error = getattr(exc, "reason", None) or exc
    done = partial.stat().st_size if partial.exists() else 0
    raise MynaError(
        f"The download of '{entry.name}' stopped at {done:,} of {entry.size:,} bytes ({last_error}); "
        "run the same command again to resume it."
    )


def _inside_hub(hub: Hub, entry: Entry) -> Path:
    """The entry's file in a folder hub; a link that leads outside the hub is refused."""
    folder = Path(hub.location).expanduser().resolve()
    source = (folder / entry.file).resolve()
    if not source.is_relative_to(folder):
        raise MynaError(f"'{entry.name}' points outside the hub folder {folder}; nothing was installed.")
    return source


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
    if adapter.kind not in KINDS:
        raise MynaError(f"'{name}' is a {adapter.kind} adapter, not a community one; use `myna adapters delete`.")
    above = [a.name for a in adapters.listing(db) if a.card.get("task_adapter_sha256") == adapter.card.get("sha256")]
    if adapter.kind == "task" and above:
        raise MynaError(f"'{name}' is the task adapter {', '.join(above)} are applied on top of; remove them first.")
    adapters.delete(db, name)


def write_index(folder: Path, name: str, entries: list[Entry]) -> Path:
    from dataclasses import asdict

    from assistant.atomic import atomic_write_text

    payload = {"format": FORMAT, "name": name, "adapters": [asdict(e) for e in entries]}
    atomic_write_text(folder / INDEX, json.dumps(payload, indent=1) + "\n")
    return folder / INDEX
