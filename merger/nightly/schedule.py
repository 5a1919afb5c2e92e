"""`myna schedule`: a nightly `myna personalize --if-idle`, as a systemd user timer where a
systemd user session runs, else as a crontab line. Each line or unit names the data folder it
serves, so several Myna homes can be scheduled side by side and removing one leaves the rest."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from assistant import paths
from assistant.errors import MynaError

MARK = "# myna-personalize"


def command(home: Path) -> str:
    myna = Path(sys.executable).with_name("myna")
    log = home / "personalize.log"
    return f"MYNA_HOME={home} {myna} personalize --if-idle >> {log} 2>&1"


def marker(home: Path) -> str:
    return f"{MARK} {home}"


def systemd_available() -> bool:
    if not shutil.which("systemctl"):
        return False
    probe = subprocess.run(["systemctl", "--user", "show-environment"], capture_output=True)
    return probe.returncode == 0


def cron_available() -> bool:
    return shutil.which("crontab") is not None


def unit_name(home: Path) -> str:
    import hashlib

    return "myna-personalize-" + hashlib.sha256(str(home).encode()).hexdigest()[:8]


def unit_files(home: Path, hour: int, minute: int) -> dict[str, str]:
    name = unit_name(home)
    return {
        f"{name}.service": f"[Unit]\nDescription=Myna nightly personalization ({home})\n\n[Service]\nType=oneshot\n"
        f"ExecStart=/bin/sh -c '{command(home)}'\nNice=10\n",
        f"{name}.timer": f"[Unit]\nDescription=Myna nightly personalization ({home})\n\n[Timer]\n"
        f"OnCalendar=*-*-* {hour:02d}:{minute:02d}:00\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n",
    }


def cron_line(home: Path, hour: int, minute: int) -> str:
    return f"{minute} {hour} * * * {command(home)} {marker(home)}"


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


def install(hour: int = 3, minute: int = 30) -> str:
    if not (0 <= hour < 24 and 0 <= minute < 60):
        raise MynaError("The time must be HH:MM, e.g. 03:30.")
    home = paths.data_dir()
    if systemd_available():
        folder = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "systemd" / "user"
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in unit_files(home, hour, minute).items():
            (folder / name).write_text(text)
        subprocess.run(["systemctl", "--user", "daemon-reload"], check=True)
        subprocess.run(["systemctl", "--user", "enable", "--now", f"{unit_name(home)}.timer"], check=True)
        return f"systemd user timer {unit_name(home)}.timer, every night at {hour:02d}:{minute:02d}"
    if cron_available():
        lines = [line for line in _crontab_lines() if not line.endswith(marker(home))]
        _write_crontab(lines + [cron_line(home, hour, minute)])
        return f"crontab line, every night at {hour:02d}:{minute:02d}"
    raise MynaError(
        "Neither a systemd user session nor cron is available; install cron (e.g. `apt install cron`) "
        "or run `myna personalize` yourself."
    )


def remove() -> str:
    home = paths.data_dir()
    removed = []
    if systemd_available():
        name = unit_name(home)
        subprocess.run(["systemctl", "--user", "disable", "--now", f"{name}.timer"], capture_output=True)
        folder = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "systemd" / "user"
        for file in unit_files(home, 0, 0):
            if (folder / file).exists():
                (folder / file).unlink()
                removed.append(file)
    if cron_available():
        lines = _crontab_lines()
        kept = [line for line in lines if not line.endswith(marker(home))]
        if len(kept) != len(lines):
            _write_crontab(kept)
            removed.append("crontab line")
    return ", ".join(removed) if removed else "nothing was scheduled"


def status() -> str | None:
    """What is scheduled for this data folder, or None."""
    home = paths.data_dir()
    if systemd_available():
        shown = subprocess.run(
            ["systemctl", "--user", "list-timers", f"{unit_name(home)}.timer", "--no-pager"],
            capture_output=True,
            text=True,
        )
        if unit_name(home) in shown.stdout:
            return shown.stdout.strip()
    if cron_available():
        for line in _crontab_lines():
            if line.endswith(marker(home)):
                return f"crontab: {line}"
    return None


def machine_busy() -> str | None:
    """Why a nightly run should wait (on battery, or the machine busy), or None."""
    import psutil

    battery = psutil.sensors_battery() if hasattr(psutil, "sensors_battery") else None
    if battery is not None and not battery.power_plugged:
        return f"the machine is on battery ({battery.percent:.0f} %)"
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    if load > 0.5:
        return f"the machine is busy (load {load:.2f} per core)"
    return None
