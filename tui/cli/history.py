"""`myna history`: your conversations, to list, read, export, rename, rate and delete."""

from __future__ import annotations

from pathlib import Path

import click

from tui.cli.base import Runtime, pass_runtime

RATINGS = {"good": 1, "neutral": 0, "bad": -1}


@click.group()
def history() -> None:
    """Your conversations: list, search, show, export, rename, settings, rate, correct, delete."""


@history.command("list")
@click.option("--limit", "-n", type=int, default=20, show_default=True, help="How many to show, newest first.")
@pass_runtime
def list_(rt: Runtime, limit: int) -> None:
    """List conversations, most recent first."""
    from assistant.store import conversations as convs

    found = convs.list_conversations(rt.db, limit=limit)
    if not found:
        click.echo('No conversations yet; start one with `myna chat` or `myna ask "..."`.')
        return
    for conv in found:
        click.echo(
            f"{conv.id:>5}  {conv.updated_at[:16].replace('T', ' ')}  {conv.message_count:>3} msgs  {conv.title}"
        )


@history.command()
@click.argument("words", nargs=-1, required=True)
@click.option("--limit", "-n", type=int, default=20, show_default=True, help="How many to show at most.")
@pass_runtime
def search(rt: Runtime, words: tuple[str, ...], limit: int) -> None:
    """Find conversations with all of WORDS in their title or in one of their messages."""
    from assistant.store import conversations as convs

    found = convs.search_conversations(rt.db, " ".join(words), limit=limit)
    if not found:
        click.echo("No conversation has all of those words; try fewer or shorter ones.")
        return
    for hit in found:
        conv = hit.conversation
        click.echo(f"{conv.id:>5}  {conv.updated_at[:16].replace('T', ' ')}  {conv.title}")
        if hit.excerpt:
            click.echo(f"       {hit.excerpt}")


@history.command()
@click.argument("conversation_id", type=int)
@click.option("--system", metavar="TEXT", help="This conversation's own instructions to the model.")
@click.option("--temperature", type=float, metavar="T", help="This conversation's own sampling temperature (0 to 2).")
@click.option("--reset", is_flag=True, help="Follow the configured system prompt and temperature again.")
@pass_runtime
def settings(rt: Runtime, conversation_id: int, system: str | None, temperature: float | None, reset: bool) -> None:
    """Show or set a conversation's own system prompt and temperature (its replies, in the app
    and with `myna ask --conversation ID`, are written with them)."""
    from assistant.errors import MynaError
    from assistant.store import conversations as convs

    conv = convs.get_conversation(rt.db, conversation_id)
    if reset and (system is not None or temperature is not None):
        raise MynaError("Give either --reset or new values, not both.")
    if reset or system is not None or temperature is not None:
        conv = convs.set_conversation_settings(
            rt.db,
            conversation_id,
            system_prompt=None if reset else (system if system is not None else conv.system_prompt),
            temperature=None if reset else (temperature if temperature is not None else conv.temperature),
        )
        click.echo(f"Saved the settings of conversation {conversation_id}.")
    click.echo(_settings_line(conv))


def _settings_line(conv) -> str:
    own = [
        f"system prompt {conv.system_prompt!r}" if conv.system_prompt is not None else "the configured system prompt",
        f"temperature {conv.temperature:g}" if conv.temperature is not None else "the configured temperature",
    ]
    return f"Conversation {conv.id} uses {' and '.join(own)}."


@history.command()
@click.argument("conversation_id", type=int, required=False)
@click.option("--last", is_flag=True, help="Show the most recent conversation.")
@pass_runtime
def show(rt: Runtime, conversation_id: int | None, last: bool) -> None:
    """Show a conversation's messages with their ids, status and ratings."""
    from assistant.store import conversations as convs

    conv = convs.get_conversation(rt.db, _which(rt, conversation_id, last))
    click.echo(f"# {conv.id}: {conv.title or 'Untitled'}")
    if conv.system_prompt is not None or conv.temperature is not None:
        click.echo(_settings_line(conv))
    for message in convs.messages(rt.db, conv.id):
        marks = [message.status] if message.status != "complete" else []
        if message.rating is not None:
            marks.append({1: "rated good", 0: "rated neutral", -1: "rated bad"}[message.rating])
        if message.correction:
            marks.append("corrected")
        tail = f"  ({', '.join(marks)})" if marks else ""
        click.echo(f"\n[{message.id}] {message.role}{tail}")
        click.echo(message.text)
        if message.correction:
            click.echo(f"-- corrected to: {message.correction}")


@history.command()
@click.argument("conversation_id", type=int, required=False)
@click.option("--last", is_flag=True, help="Export the most recent conversation.")
@click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True)
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file instead of stdout."
)
@pass_runtime
def export(rt: Runtime, conversation_id: int | None, last: bool, fmt: str, output: Path | None) -> None:
    """Export a conversation as Markdown or JSON."""
    from assistant.atomic import atomic_write_text
    from assistant.memory import store as memory_store
    from assistant.store import conversations as convs
    from assistant.store import export as exporter

    conv = convs.get_conversation(rt.db, _which(rt, conversation_id, last))
    render = exporter.to_json if fmt == "json" else exporter.to_markdown
    messages = convs.messages(rt.db, conv.id)
    sources = {m.id: memory_store.used_by(rt.db, m.id) for m in messages if m.role == "assistant"}
    text = render(conv, messages, sources)
    if output is None:
        click.echo(text, nl=False)
    else:
        atomic_write_text(output, text)
        click.echo(f"Wrote conversation {conv.id} to {output}.", err=True)


@history.command()
@click.argument("conversation_id", type=int)
@click.argument("title", nargs=-1, required=True)
@pass_runtime
def rename(rt: Runtime, conversation_id: int, title: tuple[str, ...]) -> None:
    """Give a conversation a new title."""
    from assistant.store import conversations as convs

    convs.rename_conversation(rt.db, conversation_id, " ".join(title))
    click.echo(f"Renamed conversation {conversation_id}.")


@history.command()
@click.argument("conversation_id", type=int)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_runtime
def delete(rt: Runtime, conversation_id: int, yes: bool) -> None:
    """Delete a conversation with all its messages and ratings."""
    from assistant.store import conversations as convs

    conv = convs.get_conversation(rt.db, conversation_id)
    if not yes:
        click.confirm(f"Delete conversation {conv.id} '{conv.title}' ({conv.message_count} messages)?", abort=True)
    convs.delete_conversation(rt.db, conversation_id)
    click.echo(f"Deleted conversation {conversation_id}.")


@history.command()
@click.argument("message_id", type=int)
@click.argument("rating", type=click.Choice(list(RATINGS)))
@pass_runtime
def rate(rt: Runtime, message_id: int, rating: str) -> None:
    """Rate a reply good, neutral or bad; good replies teach your personal adapter."""
    from assistant import feedback

    feedback.give(rt.db, message_id, rating=RATINGS[rating])
    click.echo(f"Rated message {message_id} {rating}.")


@history.command()
@click.argument("message_id", type=int)
@click.argument("text", nargs=-1, required=True)
@pass_runtime
def correct(rt: Runtime, message_id: int, text: tuple[str, ...]) -> None:
    """Record what a reply should have said; the correction wins over the reply."""
    from assistant import feedback
    from assistant.errors import MynaError

    corrected = " ".join(text)
    if not corrected.strip():
        raise MynaError("A correction cannot be empty; give the text the reply should have had.")
    feedback.give(rt.db, message_id, correction=corrected)
    click.echo(f"Saved the correction of message {message_id}.")


def _which(rt: Runtime, conversation_id: int | None, last: bool) -> int:
    from assistant.errors import MynaError
    from assistant.store import conversations as convs

    if conversation_id is not None:
        return conversation_id
    if last:
        latest = convs.latest_conversation_id(rt.db)
        if latest is not None:
            return latest
        raise MynaError("There are no conversations yet.")
    raise MynaError("Give a conversation id (see `myna history list`) or --last.")
