"""`myna serve`: Myna as an OpenAI-compatible server on this machine (assistant/server.py)."""

from __future__ import annotations

import click

from tui.cli.base import Runtime, pass_runtime


@click.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (another exposes your memory)."
)
@click.option("--port", default=8642, show_default=True, type=click.IntRange(1, 65535))
@click.option("--token", "show_token", is_flag=True, help="Print the bearer token clients must send, and exit.")
@pass_runtime
def serve(rt: Runtime, host: str, port: int, show_token: bool) -> None:
    """Serve your assistant (model, adapter, memory) as an OpenAI-compatible API:
    /v1/models and /v1/chat/completions (streamed or not) on http://HOST:PORT/v1.

    Clients send `Authorization: Bearer TOKEN` (the token is made at first start and kept in
    your data folder; --token prints it). Each reply goes through the same memory as the app
    and `myna ask`: its sources come back in the response's `myna` field, the conversation is
    recorded, and what your messages tell is remembered. Send `"myna": {"memory": false}` in
    a request to answer it without memory, or `"myna": {"conversation_id": N}` to continue a
    conversation. Ctrl-C stops the server.
    """
    from assistant import server

    if show_token:
        click.echo(server.token())
        return
    server.serve(host, port, model=rt.model_override, on_ready=lambda line: click.echo(line, err=True))
