"""What every command shares: one-sentence errors, and a lazily opened store and engine."""

from __future__ import annotations

import errno
import re
import sqlite3
import sys
from functools import cached_property

import click

from assistant.errors import MynaError

# NumPy's tofile (which the gguf package writes tensors with) reports a short write with
# no errno: "4608 requested and 2024 written". A regular file only takes fewer bytes than
# it was given when the disk or the user's quota is full.
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def _no_room(exc: BaseException) -> bool:
    """A full disk, however the library that hit it reports it (safetensors and torch wrap
    the operating system's error in their own, NumPy drops the errno)."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(exc)
    return "No space left on device" in text or "os error 28" in text or bool(_SHORT_WRITE.fullmatch(text))


class MynaGroup(click.Group):
    """A command group that shows Myna's failures as one sentence, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MynaError as exc:
            raise click.ClickException(str(exc)) from None
        except sqlite3.Error as exc:
            from assistant.store import describe_sqlite_error

            raise click.ClickException(str(describe_sqlite_error(exc))) from None
        except Exception as exc:
            if not _no_room(exc):
                raise
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            raise click.ClickException(
                f"The disk is full{where}, so this was not finished; what was saved before is intact. "
                "Free some space and run it again."
            ) from None
        except KeyboardInterrupt:
            click.echo("\nInterrupted.", err=True)
            sys.exit(130)


class Runtime:
    """Per-invocation state: the store opens on first use, the model only when asked for."""

    def __init__(self, model: str | None = None) -> None:
        self.model_override = model

    @cached_property
    def db(self):
        from assistant.store import open_database
        from assistant.store.conversations import recover_abandoned_replies

        db = open_database()
        recover_abandoned_replies(db)
        return db

    @cached_property
    def settings(self):
        from assistant import settings

        return settings.load(self.db)

    def engine(self):
        from assistant.engine import Engine

        return Engine.from_settings(self.settings, model=self.model_override)


pass_runtime = click.make_pass_decorator(Runtime)
