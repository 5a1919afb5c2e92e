"""Entry point of the `myna` command."""

from __future__ import annotations

import click

from tui.cli.adapters import adapters_group, export, train
from tui.cli.ask import ask
from tui.cli.base import MynaGroup, Runtime
from tui.cli.chat import chat
from tui.cli.config import config
from tui.cli.history import history
from tui.cli.hub import hub
from tui.cli.imports import import_
from tui.cli.memory import memory
from tui.cli.models import models
from tui.cli.personalize import personalize, schedule


@click.group(cls=MynaGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--model",
    "-m",
    envvar="MYNA_MODEL",
    metavar="NAME|PATH",
    help="Model to use instead of the configured one: a catalogue name or a path to a llama GGUF file.",
)
@click.version_option(package_name="myna")
@click.pass_context
def cli(ctx: click.Context, model: str | None) -> None:
    """Myna, a personal assistant that learns you, on your own machine.

    Everything you say, every rating and correction stays in a local database
    (its folder is $MYNA_HOME, or your user data folder). Start with `myna chat`,
    or ask one question with `myna ask "..."`.
    """
    from assistant import paths

    paths.make_process_private()  # the history, adapters and exports are the user's alone
    ctx.obj = Runtime(model=model)
    if ctx.invoked_subcommand is None:  # `myna` alone: what it can do, not a usage error
        click.echo(ctx.get_help())


for command in (
    ask,
    chat,
    history,
    import_,
    memory,
    train,
    adapters_group,
    export,
    personalize,
    schedule,
    hub,
    config,
    models,
):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="myna")


if __name__ == "__main__":
    main()
