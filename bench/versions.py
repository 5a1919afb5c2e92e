"""A cold `myna ask` of this checkout beside the same of an earlier commit, in one run.

    python -m bench versions [--against REV] [--runs 7]

REV (default HEAD: the last commit, so uncommitted work is measured against it) is checked
out into a temporary git worktree and run with this environment's packages (its modules come
first on the path). Each version seeds its own data folder the same way, with its own code:
the planted notes of the recall benchmark imported, and five things said in chat. Then, runs
alternating between the versions, each ask gets a fresh copy of its version's folder (so no
run answers from an earlier run's messages): a question about a note ("What is my sister
allergic to?") and a message that tells a fact inside a request (what conversation memory
sifts, and checks against what was said before). Reported: median wall time and peak memory
per version and ask, and the ratio of this checkout to REV.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import RESULTS, median, run_measured, save, table

REPO = Path(__file__).resolve().parent.parent
ASKS = {
    "question about a note": "What is my sister allergic to?",
    "a fact said inside a request": "Hi! I just adopted a dog called Biscuit. What food do puppies need?",
}
SAID = [
    "I drive a blue 2014 Skoda Octavia and it needs new tyres. Which kind is best for rain?",
    "Our team standup is at 9:15 every weekday.",
    "I'm vegetarian, so recipes should never include meat. What can I cook tonight?",
    "Update: the standup moved to 10:00 from next week.",
    "My partner Jonas is a chef and he hates coriander.",
]


# The `myna` command of whichever version PYTHONPATH puts first (env_for). -P: without it
# `-c` puts the working directory (this checkout) ahead of PYTHONPATH, and both versions
# would run this checkout's code.
MYNA = [sys.executable, "-P", "-c", "from tui.cli.main import main; main()"]


def env_for(source: Path, home: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(source), MYNA_HOME=str(home))


def seed(source: Path, home: Path) -> None:
    """A data folder as a user of this version would have it: notes imported, things said."""
    from bench.recall import FACTS

    notes = home.parent / f"{home.name}-notes.txt"
    notes.write_text("\n\n".join(fact["note"] for fact in json.loads(FACTS.read_text())["facts"]) + "\n")
    env = env_for(source, home)
    run_measured([*MYNA, "import", str(notes)], env)
    for text in SAID:
        # No --quiet: an earlier version may not have it.
        run_measured([*MYNA, "ask", "--max-tokens", "1", text], env)


def run(against: str, runs: int, on_stage=print) -> dict:
    work = Path(tempfile.mkdtemp(prefix="myna-bench-versions-"))
    earlier = work / "earlier"
    try:
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(earlier), against], check=True)
        commit = subprocess.run(
            ["git", "-C", str(earlier), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        versions = {"this checkout": REPO, f"{against} ({commit})": earlier}
        homes = {}
        for label, source in versions.items():
            on_stage(f"seeding a data folder with {label}")
            homes[label] = work / f"home-{len(homes)}"
            seed(source, homes[label])
            run_measured([*MYNA, "ask", "--max-tokens", "1", "warm up"], env_for(source, homes[label]))
        measured: dict[str, dict[str, list[dict]]] = {label: {ask: [] for ask in ASKS} for label in versions}
        on_stage(f"{runs} runs of each ask, the versions alternating")
        for _ in range(runs):
            for ask, text in ASKS.items():
                for label, source in versions.items():
                    fresh = work / "fresh"
                    shutil.rmtree(fresh, ignore_errors=True)
                    shutil.copytree(homes[label], fresh)
                    cmd = [*MYNA, "ask", "--temperature", "0", "--max-tokens", "32", text]
                    measured[label][ask].append(run_measured(cmd, env_for(source, fresh)))
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(earlier)], check=False)
        shutil.rmtree(work, ignore_errors=True)
    figures = {
        label: {
            ask: {
                "wall_s": median([r["wall_s"] for r in rows]),
                "peak_mib": max(r["peak_mib"] for r in rows),
                "reply": rows[-1]["stdout"].strip()[:200],
                "stderr": rows[-1]["stderr"].strip()[:300],
            }
            for ask, rows in by_ask.items()
        }
        for label, by_ask in measured.items()
    }
    return {"against": against, "runs": runs, "figures": figures}


def report(results: dict) -> str:
    mine, theirs = list(results["figures"])
    rows = []
    for ask in ASKS:
        a, b = results["figures"][mine][ask], results["figures"][theirs][ask]
        rows.append(
            (
                f"cold `myna ask`: {ask}",
                f"{a['wall_s']:.2f} s, {a['peak_mib']:.0f} MiB",
                f"{theirs}: {b['wall_s']:.2f} s, {b['peak_mib']:.0f} MiB; ratio {a['wall_s'] / b['wall_s']:.3f}",
            )
        )
    return table(rows, headers=("measure", "this checkout", "earlier commit"))


def main(against: str, runs: int) -> None:
    from assistant.atomic import atomic_write_text

    results = run(against, runs, on_stage=lambda stage: print(f"[{time.strftime('%H:%M:%S')}] {stage}", flush=True))
    save("versions", results)
    atomic_write_text(RESULTS / "versions.md", report(results) + "\n")
    print(report(results))
