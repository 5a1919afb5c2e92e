"""`myna schedule`: a nightly `myna personalize --if-idle` in the user's scheduler (a systemd
user timer, else a crontab line: assistant/scheduler.py), and when the machine is too busy
for it."""

from __future__ import annotations

import os
from pathlib import Path

from assistant import paths, scheduler
from assistant.errors import MynaError


def job(home: Path, hour: int = 3, minute: int = 30) -> scheduler.Job:
    """The nightly run of the data folder `home`."""
    return scheduler.Job("personalize", home, "personalize --if-idle", "personalize.log", at=(hour, minute))


def install(hour: int = 3, minute: int = 30) -> str:
    if not (0 <= hour < 24 and 0 <= minute < 60):
        raise MynaError("The time must be HH:MM, e.g. 03:30.")
    return scheduler.install(job(paths.data_dir(), hour, minute))


def remove() -> str:
    return scheduler.remove(job(paths.data_dir()))


def status() -> str | None:
    """What is scheduled for this data folder, or None."""
    return scheduler.status(job(paths.data_dir()))


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
