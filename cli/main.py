"""Entry point of the `myna` command."""

from __future__ import annotations

import click

from cli.adapters import adapters_group, export, train
from cli.ask import ask
from cli.base import MynaGroup, Runtime
from cli.chat import chat
from cli.config import config
from cli.history import history
from cli.hub import hub
from cli.imports import import_
from cli.memory import memory
from cli.models import models
from cli.personalize import personalize, schedule


@click.group(cls=MynaGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    ctx.obj = Runtime(model=model)


for command in (ask, chat, history, import_, memory, train, adapters_group, export, personalize, schedule, hub,
                config, models):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="myna")


if __name__ == "__main__":
    main()
