"""`myna memory`: what Myna remembers, to list, search, read, correct and delete."""

from __future__ import annotations

import click

from tui.cli.base import Runtime, pass_runtime


@click.group()
def memory() -> None:
    """What Myna remembers: list, search, show, edit, delete, forget everything."""


def _print(snippet, width: int | None = 100, score: float | None = None) -> None:
    from assistant.memory.store import describe

    text = " ".join(snippet.text.split())
    if width and len(text) > width:
        text = text[: width - 1] + "…"
    head = describe(snippet)
    if score is not None:
        head += f"  (score {score:.3f})"
    click.echo(head)
    click.echo(f"    {text}")


@memory.command("list")
@click.option("--limit", "-n", type=int, default=20, show_default=True)
@click.option("--kind", help="Only this kind (note, email, chat user, ...).")
@pass_runtime
def list_(rt: Runtime, limit: int, kind: str | None) -> None:
    """The newest memories first, with their ids."""
    from assistant.memory import store

    found = store.listing(rt.db, limit=limit, kind=kind)
    if not found:
        click.echo("Nothing remembered yet; chat, or import notes with `myna import PATH`.")
    for snippet in found:
        _print(snippet)
    total = store.count(rt.db)
    if total > len(found):
        click.echo(f"({total} in all; --limit shows more.)")


@memory.command()
@click.argument("query", nargs=-1, required=True)
@click.option(
    "--mode", type=click.Choice(["hybrid", "bm25", "embeddings"]), help="Default: the retrieval_mode setting."
)
@click.option("-k", "top_k", type=int, default=10, show_default=True, help="How many results.")
@pass_runtime
def search(rt: Runtime, query: tuple[str, ...], mode: str | None, top_k: int) -> None:
    """Find memories by meaning and keywords, as answers do."""
    from assistant.memory import retrieval

    hits = retrieval.search(
        rt.db, " ".join(query), k=top_k, mode=mode or rt.settings.retrieval_mode, recency=rt.settings.recency_weight
    )
    if not hits:
        click.echo("Nothing found.")
    for hit in hits:
        _print(hit.snippet, score=hit.score)


@memory.command()
@click.argument("snippet_id", type=int)
@pass_runtime
def show(rt: Runtime, snippet_id: int) -> None:
    """One memory in full, with where it came from and what it replaced or was replaced by."""
    from assistant.memory import store, told

    snippet = store.get(rt.db, snippet_id)
    _print(snippet, width=None)
    for line in told.lineage(rt.db, snippet):
        click.echo(f"    {line}")


@memory.command()
@click.argument("snippet_id", type=int)
@click.argument("text", nargs=-1)
@pass_runtime
def edit(rt: Runtime, snippet_id: int, text: tuple[str, ...]) -> None:
    """Correct a memory: give the new TEXT, or none to open it in $EDITOR."""
    from assistant.memory import store

    current = store.get(rt.db, snippet_id)
    new = " ".join(text) if text else click.edit(current.text)
    if new is None or new.strip() == current.text.strip():
        click.echo("Unchanged.")
        return
    store.edit(rt.db, snippet_id, new.strip())
    click.echo(f"Updated memory {snippet_id}.")


@memory.command()
@click.argument("snippet_ids", type=int, nargs=-1, required=True)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_runtime
def delete(rt: Runtime, snippet_ids: tuple[int, ...], yes: bool) -> None:
    """Delete memories: their text, vector and index entries are erased."""
    from assistant.memory import store

    found = store.get_many(rt.db, list(snippet_ids))
    if not yes:
        for snippet in found:
            _print(snippet)
        click.confirm(f"Delete {len(snippet_ids)} memories?", abort=True)
    store.delete(rt.db, list(snippet_ids))
    click.echo(f"Deleted {len(snippet_ids)} memories.")


@memory.command()
@pass_runtime
def sources(rt: Runtime) -> None:
    """The imported files, with their ids and snippet counts."""
    from assistant.memory import store

    found = store.sources(rt.db)
    if not found:
        click.echo("No files imported yet; use `myna import PATH`.")
    for source in found:
        state = "" if source.status == "complete" else "  (interrupted: run the import again to finish)"
        click.echo(f"{source.id:>4}  {source.snippet_count:>6} snippets  {source.location}{state}")


@memory.command("delete-source")
@click.argument("source_id", type=int)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_runtime
def delete_source(rt: Runtime, source_id: int, yes: bool) -> None:
    """Delete everything imported from one file (ids from `myna memory sources`)."""
    from assistant.errors import MynaError
    from assistant.memory import store

    source = next((s for s in store.sources(rt.db) if s.id == source_id), None)
    if source is None:
        raise MynaError(f"There is no imported source {source_id}; `myna memory sources` lists them.")
    if not yes:
        click.confirm(f"Delete the {source.snippet_count} memories imported from {source.location}?", abort=True)
    removed = store.delete_source(rt.db, source_id)
    click.echo(f"Deleted {removed} memories from {source.location}.")


@memory.command()
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_runtime
def forget(rt: Runtime, yes: bool) -> None:
    """Forget everything: every memory, imported or from chats. Conversations stay."""
    from assistant.memory import store

    total = store.count(rt.db)
    if not yes:
        click.confirm(f"Erase all {total} memories? This cannot be undone.", abort=True)
    store.forget_everything(rt.db)
    click.echo(f"Forgot {total} memories.")
