"""Entry point of the `myna` command."""

from __future__ import annotations

import importlib

import click

from tui.cli.base import MynaGroup, Runtime

# Each command's module is imported only when that command runs (or help lists it): `myna
# chat` should not pay for the training and hub modules before its window is drawn.
COMMANDS = {
    "ask": "tui.cli.ask:ask",
    "chat": "tui.cli.chat:chat",
    "history": "tui.cli.history:history",
    "import": "tui.cli.imports:import_",
    "memory": "tui.cli.memory:memory",
    "train": "tui.cli.adapters:train",
    "adapters": "tui.cli.adapters:adapters_group",
    "export": "tui.cli.adapters:export",
    "personalize": "tui.cli.personalize:personalize",
    "schedule": "tui.cli.personalize:schedule",
    "hub": "tui.cli.hub:hub",
    "config": "tui.cli.config:config",
    "models": "tui.cli.models:models",
    "serve": "tui.cli.serve:serve",
}


class LazyGroup(MynaGroup):
    """Click's documented lazy-loading pattern: subcommands named here, imported on use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or name in self.commands:
            return super().get_command(ctx, name)
        module, attr = COMMANDS[name].split(":")
        command = getattr(importlib.import_module(module), attr)
        self.add_command(command, name)
        return command


@click.group(cls=LazyGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--model",
    "-m",
    envvar="MYNA_MODEL",
    metavar="NAME|PATH",
    help="Model to use instead of the configured one: a catalogue name or a path to a GGUF model file.",
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


def main() -> None:
    cli(prog_name="myna")


if __name__ == "__main__":
    main()
