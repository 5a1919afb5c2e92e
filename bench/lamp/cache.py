"""Every stage's result is saved as JSON when it is computed, so a run that crashes or is
stopped resumes where it stopped; each record keeps the seconds and memory its stage took."""

from __future__ import annotations

import hashlib
import json
import resource
import time
from pathlib import Path


def cached(path: Path, compute) -> dict:
    """A stage's result: read if it was computed before, else computed now and saved."""
    if path.exists():
        return json.loads(path.read_text())
    started = time.perf_counter()
    value = compute()
    value.setdefault("seconds", time.perf_counter() - started)
    value.setdefault("peak_mib", peak_mib())  # the process's peak so far: an upper bound for the stage
    from assistant.atomic import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(value))
    return value


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
