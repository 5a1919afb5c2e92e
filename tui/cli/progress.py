"""The terminal progress bar every long command uses."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

Update = Callable[..., None]  # update(completed=..., total=..., description=...)


@contextlib.contextmanager
def progress_bar(description: str, unit: str = "") -> Iterator[Update]:
    """A bar on stderr (stdout stays clean for output); yields an update function."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TextColumn("elapsed,"),
        TimeRemainingColumn(),
        TextColumn("left"),
    ]
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=None)
        yield lambda **fields: bar.update(task, **fields)
