"""`myna config`: generation and model settings, stored in your database."""

from __future__ import annotations

import click

from tui.cli.base import Runtime, pass_runtime


@click.group()
def config() -> None:
    """Show and change settings (model, context size, temperature, ...)."""


@config.command("list")
@pass_runtime
def list_(rt: Runtime) -> None:
    """Every setting with its value; (default) marks the ones you have not changed."""
    import dataclasses

    from assistant import settings as settings_mod

    mine = settings_mod.stored(rt.db)
    for key, value in dataclasses.asdict(rt.settings).items():
        mark = "" if key in mine else "  (default)"
        click.echo(f"{key} = {value!r}{mark}")
        click.echo(f"    {settings_mod.DESCRIPTIONS[key]}")


@config.command()
@click.argument("key")
@pass_runtime
def get(rt: Runtime, key: str) -> None:
    """Print one setting's value."""
    from assistant import settings as settings_mod

    click.echo(getattr(rt.settings, settings_mod.check_name(key)))


# A value may start with a dash ("temperature -1" must reach the range check, not click).
@config.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("key")
@click.argument("value")
@pass_runtime
def set_(rt: Runtime, key: str, value: str) -> None:
    """Change a setting; `myna config list` shows them all."""
    from assistant import settings as settings_mod

    stored = settings_mod.set_value(rt.db, key, value)
    click.echo(f"{key} = {stored!r}")


@config.command()
@click.argument("key")
@pass_runtime
def unset(rt: Runtime, key: str) -> None:
    """Restore a setting's default."""
    from assistant import settings as settings_mod

    settings_mod.unset(rt.db, key)
    click.echo(f"{key} = {getattr(settings_mod.Settings(), key)!r} (default)")


@config.command()
def path() -> None:
    """Where Myna keeps your data."""
    from assistant import paths

    click.echo(f"data folder: {paths.data_dir()}")
    click.echo(f"database:    {paths.database_path()}")
