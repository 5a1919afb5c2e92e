"""What every benchmark shares: measuring child processes, medians, writing results."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from assistant.atomic import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
BIN = Path(sys.executable).parent


# Linux carries a parent's peak RSS into its child across fork and exec, so a child started
# from this (large) process would report at least our own peak. A tiny interpreter starts the
# command instead and reports the command's own wall time and peak.
_MEASURE = """
import json, os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
out, err = proc.communicate()
wall = time.perf_counter() - start
import resource
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"wall_s": wall, "peak_mib": peak / 1024, "code": proc.returncode,
                  "stdout": out.decode(errors="replace"), "stderr": err.decode(errors="replace")}))
"""


def end_on_kill_as_on_ctrl_c() -> None:
    """A kill (SIGTERM, which `timeout` and CI send) ends a benchmark as Ctrl-C does: through
    every `finally`, so the temporary folders it made (some over half a GB) go with it.
    Python's default for SIGTERM is to stop at once, leaving them behind."""
    import signal

    def end(signum, frame):
        # Only the first: `timeout` signals the command and then its whole process group, and
        # a second exit raised inside a `finally` would cut the removal short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, end)


def run_measured(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> dict:
    """Run a command to completion: wall seconds, peak resident memory (MiB), its output."""
    wrapper = subprocess.run(
        [sys.executable, "-S", "-c", _MEASURE, *cmd], env=env, capture_output=True, text=True, timeout=timeout
    )
    result = json.loads(wrapper.stdout)
    if result["code"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result['code']}): {result['stderr'].strip()[-500:]}")
    return result


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> dict:
    import psutil

    return {
        "cpus_logical": os.cpu_count(),
        "cpus_physical": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def save(name: str, payload: dict) -> Path:
    path = RESULTS / f"{name}.json"
    atomic_write_text(path, json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    return path


def table(rows: list[tuple[str, str, str]], headers=("measure", "value", "baseline / target")) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(3)]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])
