"""`myna import`: files and folders into memory."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tui.cli.base import Runtime, pass_runtime


@click.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--max-size", type=float, default=16, show_default=True, metavar="MB", help="Largest file to import, in megabytes."
)
@pass_runtime
def import_(rt: Runtime, paths: tuple[Path, ...], max_size: float) -> None:
    """Import notes, e-mails, posts and histories so answers can draw on them.

    PATHS are files or folders (searched recursively): plain text and Markdown
    (.txt, .md), e-mails saved as .eml, JSON Lines of {"text", "date", "kind"}
    records (.jsonl), and LaMP-format questions files (.json), whose profiles
    are imported. Long texts are split into snippets. Importing the same content
    again adds nothing; an interrupted import continues where it stopped when run
    again; a file that changed replaces its earlier version.
    """
    from assistant.memory import ingest
    from tui.cli.progress import progress_bar

    try:
        with progress_bar("reading", unit="snippets") as update:
            report = ingest.import_paths(
                rt.db,
                list(paths),
                max_mb=max_size,
                on_progress=lambda done, total, name: update(completed=done, total=total, description=name),
            )
            update(description="imported" if report.snippets else "nothing new")
    except KeyboardInterrupt:
        click.echo(
            "Import interrupted: what was stored so far is kept; run the same command again to continue.", err=True
        )
        sys.exit(130)
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    for error in report.errors:
        click.echo(f"Error: {error}", err=True)
    parts = [f"{report.snippets} snippets from {len(report.imported) + len(report.replaced)} files"]
    if report.replaced:
        parts.append(f"{len(report.replaced)} of them replacing earlier versions")
    if report.unchanged:
        parts.append(f"{len(report.unchanged)} files already imported and unchanged")
    click.echo("Imported " + "; ".join(parts) + ".")
    if report.errors:
        sys.exit(1)
