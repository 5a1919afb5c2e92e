"""`myna ask`: one question, one streamed answer, both recorded."""

from __future__ import annotations

import sys

import click

from tui.cli.base import Runtime, pass_runtime
from tui.cli.signals import ctrl_c_stops


@click.command()
@click.argument("prompt", nargs=-1)
@click.option("-c", "--continue", "continue_last", is_flag=True, help="Continue your most recent conversation.")
@click.option("--conversation", "conversation_id", type=int, metavar="ID", help="Continue conversation ID.")
@click.option("--system", metavar="TEXT", help="Instructions for this answer instead of the configured system prompt.")
@click.option("--max-tokens", type=int, metavar="N", help="Longest reply in tokens, for this answer only.")
@click.option("--temperature", type=float, metavar="T", help="Sampling temperature (0 to 2), for this answer only.")
@click.option("--sources", "show_sources", is_flag=True, help="Print the memories the answer was given, under it.")
@click.option("--no-memory", is_flag=True, help="Answer without retrieving anything from your history.")
@click.option("--quiet", "-q", is_flag=True, help="Do not say on standard error what your message left in memory.")
@click.option("--alone", is_flag=True, help="Answer in this process even when `myna serve` is running.")
@pass_runtime
def ask(
    rt: Runtime,
    prompt: tuple[str, ...],
    continue_last: bool,
    conversation_id: int | None,
    system: str | None,
    max_tokens: int | None,
    temperature: float | None,
    show_sources: bool,
    no_memory: bool,
    quiet: bool,
    alone: bool,
) -> None:
    """Answer PROMPT, streaming the reply, and keep both in your history.

    With no PROMPT the question is read from standard input, e.g.
    `cat notes.txt | myna ask`. Ctrl-C stops the reply; what was written so far is
    kept, marked as interrupted.

    What your message tells about you ("I just adopted a dog called Biscuit") is
    remembered, and said on standard error ("Remembered: ..."); `--quiet` keeps that
    line back, `myna config set memory_from_chat off` stops it.

    When `myna serve` is running for the same data folder (and no --model is given), it
    answers: nothing is loaded here, and the output is the same. Otherwise, or with
    --alone, this process loads the model and answers itself.
    """
    from assistant import input_text

    text = " ".join(prompt)
    if not text and not sys.stdin.isatty():
        piped = input_text.decode(sys.stdin.buffer.read())
        text = piped.text
        if piped.replaced:
            click.echo(piped.notice("standard input"), err=True)
    if (
        not alone
        and rt.model_override is None
        and _answered_by_server(
            text, continue_last, conversation_id, system, max_tokens, temperature, show_sources, no_memory, quiet
        )
    ):
        return
    # Answering here: what the model, the store and memory need (a warm ask never imports it).
    from assistant import prompt as prompts
    from assistant import replies
    from assistant import settings as settings_mod
    from assistant.errors import MynaError
    from assistant.store import conversations as convs

    if continue_last:
        conversation_id = convs.latest_conversation_id(rt.db)
        if conversation_id is None:
            raise MynaError("There is no conversation to continue yet; ask without --continue first.")
    # The conversation's own system prompt and temperature (`myna history settings`), then
    # this command's options over them.
    settings = settings_mod.with_overrides(
        replies.settings_for(rt.db, rt.settings, conversation_id),
        system_prompt=system,
        max_tokens=max_tokens,
        temperature=temperature,
    )
    prompts.check_user_text(text, settings.context_size)  # before paying for the model

    if not no_memory and settings.memory == "on":
        from assistant.memory import retrieval

        # One search: the exact scan, without faiss (retrieval.exact_only), until the command ends.
        click.get_current_context().with_resource(retrieval.exact_only())
        retrieval.warm_up(rt.db)
    engine = rt.engine()
    pending = replies.begin(rt.db, engine, settings, text, conversation_id=conversation_id, use_memory=not no_memory)
    if pending.notice:
        click.echo(pending.notice, err=True)
    interrupted = (
        f"Interrupted: the partial reply is kept as message {pending.message_id} "
        f"(see `myna history show {pending.conversation_id}`)."
    )
    try:
        with ctrl_c_stops() as stop:
            reply = replies.stream(
                rt.db,
                engine,
                settings,
                pending,
                on_text=lambda piece: click.echo(piece, nl=False),
                should_stop=stop.is_set,
            )
    except KeyboardInterrupt:  # a second Ctrl-C: stop at once, the reply saved as it was
        click.echo()
        click.echo(interrupted, err=True)
        sys.exit(130)
    click.echo()
    sources = [(s.id, s.kind, s.date, s.origin, s.text) for s in reply.sources]
    remembered = [(r.memory.id, r.summary) for r in pending.remembered]
    _after(sources if show_sources else None, [] if quiet else remembered, reply.dropped_turns, reply.finish)
    if reply.status == "interrupted":
        click.echo(interrupted, err=True)
        sys.exit(130)


def _after(sources, remembered, dropped_turns: int, finish: str) -> None:
    """What follows an answer, whoever wrote it: its sources (None: not asked for), what the
    message left in memory, and notes on what was cut."""
    if sources is not None:
        _print_sources(sources)
    for memory_id, summary in remembered:  # after the answer: what the message left in memory
        click.echo(f"Remembered: {summary} (`myna memory delete {memory_id}` forgets it)", err=True)
    if dropped_turns:
        click.echo(f"(The {dropped_turns} oldest messages did not fit in the context and were left out.)", err=True)
    if finish == "length":
        click.echo("(The reply reached its length limit; raise it with --max-tokens.)", err=True)


def _answered_by_server(
    text, continue_last, conversation_id, system, max_tokens, temperature, show_sources, no_memory, quiet
) -> bool:
    """Hand the question to a running `myna serve` of this data folder; False if none answers."""
    from tui.cli import warm

    place = warm.running()
    if place is None:
        return False
    messages = ([{"role": "system", "content": system}] if system is not None else []) + [
        {"role": "user", "content": text}
    ]
    body = {
        "model": "myna",
        "messages": messages,
        "myna": {"memory": not no_memory, "conversation_id": conversation_id, "continue_last": continue_last},
        **({"max_tokens": max_tokens} if max_tokens is not None else {}),
        **({"temperature": temperature} if temperature is not None else {}),
    }
    with ctrl_c_stops() as stop:
        done = warm.ask(place, body, on_text=lambda piece: click.echo(piece, nl=False), should_stop=stop.is_set)
    if done is None:
        return False
    click.echo()
    if done["stopped"]:
        click.echo("Interrupted: the partial reply is kept (see `myna history list`).", err=True)
        sys.exit(130)
    if done.get("notice"):
        click.echo(done["notice"], err=True)
    sources = [(s["id"], s["kind"], s["date"], s["origin"], s["text"]) for s in done.get("sources", [])]
    remembered = [(r["id"], r["summary"]) for r in done.get("remembered", [])]
    _after(sources if show_sources else None, [] if quiet else remembered, done.get("dropped_turns", 0), done["finish"])
    return True


def _print_sources(sources) -> None:
    """(id, kind, date, origin, text) of each memory the answer was given."""
    from assistant.memory.store import one_line

    if not sources:
        click.echo("\nSources: none (nothing relevant was remembered).")
        return
    click.echo("\nSources:")
    for memory_id, kind, date, origin, text in sources:
        click.echo(f"  [{memory_id}] {kind}, {date or 'undated'}, {origin}: {one_line(text, 90)}")
