"""The personalization screen: the last runs, a running one's progress, and a way to start one.

A run is a separate `myna personalize` process (it loads the training stack, which the chat
must not pay for); this screen follows it through its run record in the store.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Label, ProgressBar, Static

from assistant import paths
from merger.nightly import runs


def start_run_in_background(again: bool = False) -> subprocess.Popen:
    myna = Path(sys.executable).with_name("myna")
    command = [str(myna)] if myna.exists() else [sys.executable, "-m", "tui.cli"]
    log = open(paths.data_dir() / "personalize.log", "ab")
    return subprocess.Popen(
        [*command, "personalize", *(["--again"] if again else [])],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


class PersonalizeScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back to chat"),
        Binding("s", "start", "Start a run now"),
        Binding("a", "start(True)", "Run even if nothing changed", show=False),  # the hint offers it when so
    ]

    def compose(self) -> ComposeResult:
        yield Label("Personalization: nightly merges of community adapters, scored on your history.", id="runs-title")
        yield Label("", id="run-phase")
        yield ProgressBar(id="run-progress", show_eta=False)
        yield Static("", id="runs", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.process: subprocess.Popen | None = None
        self.refresh_runs()
        self.set_interval(1.0, self.refresh_runs)

    def _idle_hint(self, latest: runs.Run | None) -> str:
        """What to do next when nothing runs (`latest`: the last run): a run needs community
        adapters from a hub first."""
        from assistant import adapters

        if not any(a.kind == "community" for a in adapters.listing(self.app.db)):
            return (
                "No community adapters yet: a run merges adapters others share. Get some with "
                "`myna adapters search --hub FOLDER|URL` and `myna adapters pull NAME` (or build a hub "
                "with `myna hub build`), then press s."
            )
        if latest and latest.nothing_changed:
            return (
                "Nothing changed since the last search, so the last run was skipped (it would find the same "
                "adapter); press a to run again anyway."
            )
        return "No run in progress; press s to start one (`myna schedule install` runs one nightly)."

    def refresh_runs(self) -> None:
        runs.mark_interrupted(self.app.db)
        recent = runs.recent(self.app.db, 8)
        running = next((run for run in recent if run.status == "running"), None)
        phase = self.query_one("#run-phase", Label)
        bar = self.query_one("#run-progress", ProgressBar)
        if running:
            phase.update(
                f"Running: {running.phase} {running.done}/{running.total}"
                if running.total
                else f"Running: {running.phase}"
            )
            bar.update(total=max(running.total, 1), progress=running.done)
            bar.display = True
        else:
            phase.update(self._idle_hint(recent[0] if recent else None))
            bar.display = False
        text = "\n".join(run.describe() for run in recent) if recent else "No personalization run yet."
        self.query_one("#runs", Static).update(text)

    def action_start(self, again: bool = False) -> None:
        latest = runs.latest(self.app.db)
        if latest and latest.status == "running":
            self.app.notify("A run is already in progress.")
            return
        self.process = start_run_in_background(again)
        self.app.notify("Started a personalization run in the background; the chat stays usable.")
