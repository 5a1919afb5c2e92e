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
@click.option("--detach", is_flag=True, help="Run in the background (its log: server.log in your data folder).")
@click.option("--stop", is_flag=True, help="Stop the server running for this data folder.")
@click.option(
    "--at-login",
    "login",
    flag_value="on",
    help="Start this server (same host, port, model) at each login: a systemd user service, else cron's @reboot.",
)
@click.option("--not-at-login", "login", flag_value="off", help="No longer start it at login.")
@pass_runtime
def serve(rt: Runtime, host: str, port: int, show_token: bool, detach: bool, stop: bool, login: str | None) -> None:
    """Serve your assistant (model, adapter, memory) as an OpenAI-compatible API:
    /v1/models and /v1/chat/completions (streamed or not) on http://HOST:PORT/v1.

    Clients send `Authorization: Bearer TOKEN` (the token is made at first start and kept in
    your data folder; --token prints it). Each reply goes through the same memory as the app
    and `myna ask`: its sources come back in the response's `myna` field, the conversation is
    recorded, and what your messages tell is remembered. Send `"myna": {"memory": false}` in
    a request to answer it without memory, or `"myna": {"conversation_id": N}` to continue a
    conversation. Ctrl-C stops the server; or run it with --detach and stop it with --stop,
    or have it start at each login with --at-login. While it runs, `myna ask` hands its
    questions to it.
    """
    if login:
        from assistant import scheduler
        from assistant.paths import data_dir

        job = login_job(data_dir(), host, port, rt.model_override)
        if login == "off":
            click.echo(f"Removed: {scheduler.remove(job)}.")
        else:
            click.echo(
                f"Scheduled: {scheduler.install(job)}; it starts with your next login (`myna serve --detach` "
                "starts one now), its log is server.log in your data folder."
            )
    elif show_token:
        from assistant import server

        click.echo(server.token())
    elif stop:
        _stop()
    elif detach:
        _detach(host, port, rt.model_override)
    else:
        from assistant import server

        server.serve(host, port, model=rt.model_override, on_ready=lambda line: click.echo(line, err=True))


def login_job(home, host: str = "127.0.0.1", port: int = 8642, model: str | None = None):
    """`myna serve` of the data folder `home`, started at login (assistant/scheduler.py)."""
    from assistant import scheduler

    chosen = f"--model {model} " if model else ""
    return scheduler.Job("serve", home, f"{chosen}serve --host {host} --port {port}", "server.log")


def _detach(host: str, port: int, model: str | None) -> None:
    import subprocess
    import sys
    import time

    from assistant.errors import MynaError
    from assistant.paths import data_dir
    from tui.cli import warm

    if warm.running() is not None:
        raise MynaError("A server is already running for this data folder; `myna serve --stop` stops it.")
    log = data_dir() / "server.log"
    command = [sys.executable, "-c", "from tui.cli.main import main; main()", *(["--model", model] if model else [])]
    with open(log, "w") as sink:
        child = subprocess.Popen(
            [*command, "serve", "--host", host, "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
            start_new_session=True,  # not stopped by the terminal's Ctrl-C or its closing
        )
    deadline = time.monotonic() + 300
    while (place := warm.running()) is None or place.pid != child.pid:
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            lines = log.read_text().strip().splitlines()
            raise MynaError(f"The server did not start: {lines[-1] if lines else 'no output'} (see {log}).")
        time.sleep(0.2)
    click.echo(
        f"Myna serves on http://{host}:{port}/v1 in the background (pid {child.pid}); `myna serve --stop` stops it."
    )


def _stop() -> None:
    import os
    import signal
    import time

    from tui.cli import warm

    place = warm.running()
    if place is None:
        click.echo("No server is running for this data folder.")
        return
    import psutil

    os.kill(place.pid, signal.SIGTERM)  # uvicorn finishes what it serves, then the server tidies up
    deadline = time.monotonic() + 60

    def alive() -> bool:
        try:
            return psutil.Process(place.pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    while alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive():
        os.kill(place.pid, signal.SIGKILL)
    click.echo(f"Stopped the server (pid {place.pid}).")
