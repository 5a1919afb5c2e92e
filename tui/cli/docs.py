"""docs/cli.md, generated from the commands' own help so the two never drift apart.

`make docs` rewrites the file; a test fails when it is out of date.
"""

from __future__ import annotations

import click
from click.testing import CliRunner


def commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # a lazy group imports each command here
        command = group.get_command(ctx, name)
        found.append(((*path, name), command))
        if isinstance(command, click.Group):
            found.extend(commands(command, (*path, name)))
    return found


def render() -> str:
    from tui.cli.main import cli

    runner = CliRunner()
    parts = ["# The `myna` command\n", "Generated from `myna --help` by `make docs`; do not edit by hand.\n"]
    for path, _ in [((), cli)] + commands(cli):
        help_text = runner.invoke(cli, [*path, "--help"], prog_name="myna", terminal_width=100).output
        parts.append(f"## myna {' '.join(path)}".rstrip() + "\n")
        parts.append("```\n" + help_text.rstrip() + "\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(render(), end="")
