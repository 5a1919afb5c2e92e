"""Every stage's result is saved as JSON when it is computed, so a run that crashes or is
stopped resumes where it stopped; each record keeps the seconds and memory its stage took."""

from __future__ import annotations

import hashlib
import json
import resource
import time
from pathlib import Path


def cached(path: Path, compute, kind=None):
    """A stage's result: read if it was computed before, else computed now and saved. With a
    `kind` (a record class of bench.lamp.records) compute returns that record, and the saved
    JSON is read back as one; without, the result is a plain dict."""
    if path.exists():
        data = json.loads(path.read_text())
        return kind.from_json(data) if kind else data
    started = time.perf_counter()
    value = compute()
    data = value.to_json() if kind else value
    if data.get("seconds") is None:
        data["seconds"] = time.perf_counter() - started
    if data.get("peak_mib") is None:
        data["peak_mib"] = peak_mib()  # the process's peak so far: an upper bound for the stage
    from assistant.atomic import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data))
    return kind.from_json(data) if kind else data


# The code a stage's result depends on: the runtime, personalization and the benchmark's own
# stages. A run's cache is named by its digest, so a run resumed after any of it changed starts a
# cache of its own instead of mixing results of two versions (the 4 December notes found one).
CODE_ROOTS = ("assistant", "merger", "bench/lamp", "bench/common.py")
REPO = Path(__file__).resolve().parent.parent.parent


def code_digest(repo: Path = REPO, roots: tuple[str, ...] = CODE_ROOTS) -> str:
    digest = hashlib.sha256()
    for root in roots:
        top = repo / root
        for path in sorted([top] if top.is_file() else top.rglob("*.py")):
            digest.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:10]


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage_totals(work: Path) -> tuple[float, float]:
    """What the whole run costs from scratch: every cached stage's own time, whichever
    invocation computed it (a resumed run's wall time counts only what it redid), and the
    highest process peak (MiB) any stage recorded."""
    seconds, peak = 0.0, 0.0
    for path in work.rglob("*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):  # stage records; a dataset's files are lists
            seconds += record.get("seconds", 0.0)
            peak = max(peak, record.get("peak_mib") or 0.0)
    return seconds, peak


def run_name(quick: bool, lamp: tuple[Path, Path] | None) -> str:
    """What a run's cache and results are called: a LaMP pair given by path gets its own,
    named by its content, so no two pairs ever share a user's store or adapter."""
    name = f"lamp-{'quick' if quick else 'full'}" if lamp is None else f"lamp{'-quick' if quick else ''}"
    if lamp is None:
        return name
    digest = hashlib.sha256(b"".join(Path(p).read_bytes() for p in lamp)).hexdigest()[:10]
    return f"{name}-{Path(lamp[0]).stem}-{digest}"
