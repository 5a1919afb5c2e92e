"""Myna's jobs in the user's own scheduler: a systemd user unit where a systemd user session
runs, else a crontab line. Two jobs use it: the nightly `myna personalize --if-idle`
(merger/nightly/schedule.py) and `myna serve` started at login (tui/cli/serve.py).

Every unit and line names the job and the data folder it serves, so several Myna homes can be
scheduled side by side and removing one job of one home leaves everything else as it was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from assistant.errors import MynaError


@dataclass(frozen=True)
class Job:
    kind: str  # "personalize", "serve": part of its unit's name and of its crontab marker
    home: Path  # the data folder it serves
    arguments: str  # what follows `myna` on its command line
    log: str  # its log file's name in the data folder
    at: tuple[int, int] | None = None  # every day at (hour, minute); None: at login (cron: at boot)

    @property
    def description(self) -> str:
        return f"Myna {self.kind} ({self.home})"

    @property
    def unit(self) -> str:
        return f"myna-{self.kind}-" + hashlib.sha256(str(self.home).encode()).hexdigest()[:8]

    @property
    def marker(self) -> str:
        return f"# myna-{self.kind} {self.home}"

    def command(self) -> str:
        myna = Path(sys.executable).with_name("myna")
        return f"MYNA_HOME={self.home} {myna} {self.arguments} >> {self.home / self.log} 2>&1"

    def when(self) -> str:
        """In words, for what install says."""
        return f"every night at {self.at[0]:02d}:{self.at[1]:02d}" if self.at else "at login"

    def unit_files(self) -> dict[str, str]:
        if self.at is None:  # a long-running service of the user's session
            return {
                f"{self.unit}.service": f"[Unit]\nDescription={self.description}\n\n[Service]\nType=simple\n"
                f"ExecStart=/bin/sh -c '{self.command()}'\nRestart=on-failure\nRestartSec=30\n\n"
                "[Install]\nWantedBy=default.target\n"
            }
        hour, minute = self.at
        return {
            f"{self.unit}.service": f"[Unit]\nDescription={self.description}\n\n[Service]\nType=oneshot\n"
            f"ExecStart=/bin/sh -c '{self.command()}'\nNice=10\n",
            f"{self.unit}.timer": f"[Unit]\nDescription={self.description}\n\n[Timer]\n"
            f"OnCalendar=*-*-* {hour:02d}:{minute:02d}:00\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n",
        }

    def enabled_unit(self) -> str:
        return f"{self.unit}.timer" if self.at else f"{self.unit}.service"

    def cron_line(self) -> str:
        when = f"{self.at[1]} {self.at[0]} * * *" if self.at else "@reboot"
        return f"{when} {self.command()} {self.marker}"


def systemd_available() -> bool:
    if not shutil.which("systemctl"):
        return False
    probe = subprocess.run(["systemctl", "--user", "show-environment"], capture_output=True)
    return probe.returncode == 0


def cron_available() -> bool:
    return shutil.which("crontab") is not None


def _unit_folder() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "systemd" / "user"


def _crontab_lines() -> list[str]:
    listed = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    if listed.returncode != 0:
        if "no crontab" in listed.stderr:
            return []
        raise MynaError(f"Cannot read your crontab ({listed.stderr.strip()}).")
    return listed.stdout.splitlines()


def _write_crontab(lines: list[str]) -> None:
    written = subprocess.run(
        ["crontab", "-"], input="\n".join(lines) + "\n" if lines else "", capture_output=True, text=True
    )
    if written.returncode != 0:
        raise MynaError(f"Cannot write your crontab ({written.stderr.strip()}).")


def install(job: Job) -> str:
    """Schedule `job` (replacing the same job of the same home); what was installed, in words.
    A systemd timer starts counting at once; a login service is only enabled (the next login
    starts it), so it never starts a second server beside one already running."""
    if systemd_available():
        folder = _unit_folder()
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in job.unit_files().items():
            (folder / name).write_text(text)
        subprocess.run(["systemctl", "--user", "daemon-reload"], check=True)
        now = ["--now"] if job.at else []
        subprocess.run(["systemctl", "--user", "enable", *now, job.enabled_unit()], check=True)
        return f"systemd user {'timer' if job.at else 'service'} {job.enabled_unit()}, {job.when()}"
    if cron_available():
        lines = [line for line in _crontab_lines() if not line.endswith(job.marker)]
        _write_crontab(lines + [job.cron_line()])
        return f"crontab line, {job.when() if job.at else 'at boot (@reboot)'}"
    raise MynaError(
        "Neither a systemd user session nor cron is available; install cron (e.g. `apt install cron`) "
        f"or run `myna {job.arguments.split()[0]}` yourself."
    )


def remove(job: Job) -> str:
    """Unschedule `job`; what was removed, in words."""
    removed = []
    if systemd_available():
        subprocess.run(["systemctl", "--user", "disable", job.enabled_unit()], capture_output=True)
        if job.at:
            subprocess.run(["systemctl", "--user", "stop", job.enabled_unit()], capture_output=True)
        for name in job.unit_files():
            if (_unit_folder() / name).exists():
                (_unit_folder() / name).unlink()
                removed.append(name)
    if cron_available():
        lines = _crontab_lines()
        kept = [line for line in lines if not line.endswith(job.marker)]
        if len(kept) != len(lines):
            _write_crontab(kept)
            removed.append("crontab line")
    return ", ".join(removed) if removed else "nothing was scheduled"


def status(job: Job) -> str | None:
    """What is scheduled of `job`, or None."""
    if systemd_available():
        if job.at:
            shown = subprocess.run(
                ["systemctl", "--user", "list-timers", job.enabled_unit(), "--no-pager"], capture_output=True, text=True
            )
            if job.unit in shown.stdout:
                return shown.stdout.strip()
        elif (_unit_folder() / job.enabled_unit()).exists():
            enabled = subprocess.run(
                ["systemctl", "--user", "is-enabled", job.enabled_unit()], capture_output=True, text=True
            )
            return f"systemd user service {job.enabled_unit()}: {enabled.stdout.strip() or 'not enabled'}"
    if cron_available():
        for line in _crontab_lines():
            if line.endswith(job.marker):
                return f"crontab: {line}"
    return None
