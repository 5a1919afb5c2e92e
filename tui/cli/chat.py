"""`myna chat`: the terminal app."""

from __future__ import annotations

import click

from tui.cli.base import Runtime, pass_runtime


@click.command()
@click.option("--conversation", "conversation_id", type=int, metavar="ID", help="Open conversation ID.")
@click.option("--new", is_flag=True, help="Start with a new conversation (by default the last one opens).")
@pass_runtime
def chat(rt: Runtime, conversation_id: int | None, new: bool) -> None:
    """Chat in a full-screen terminal app.

    The window opens at once while the model loads in the background, on the
    conversation you had last. Your conversations are listed on the left; Enter
    sends, Escape stops a reply, and the footer shows the other keys.
    """
    from tui.app import MynaApp

    MynaApp(model=rt.model_override, conversation_id=conversation_id, new=new).run()
