"""`myna models`: the model catalogue."""

from __future__ import annotations

from pathlib import Path

import click

from tui.cli.base import Runtime, pass_runtime


@click.group()
def models() -> None:
    """The models Myna knows, and checks of their files."""


@models.command("list")
@pass_runtime
def list_(rt: Runtime) -> None:
    """Catalogue models and the ones you added, with the configured one marked, and
    whether Myna can personalize each (train and merge adapters for it) or only chat."""
    from assistant import catalogue
    from merger.formats.base_model import PERSONALIZABLE

    current = rt.model_override or rt.settings.model
    for spec in catalogue.manifests():
        mark = "*" if spec.name == current else " "
        state = "installed" if spec.path.is_file() else f"missing: {spec.install_hint or spec.path}"
        use = "personalizable" if spec.architecture in PERSONALIZABLE else "chat only"
        origin = "added by you" if spec.registered else spec.license
        click.echo(f"{mark} {spec.name}  ({spec.architecture}, {use}; {origin}; {state})")
        if spec.description:
            click.echo(f"    {spec.description}")
    if current not in {spec.name for spec in catalogue.manifests()}:
        click.echo(f"* {current}  (a file given by path)")


@models.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", help="The name to choose it by (default: from the file name).")
@pass_runtime
def add(rt: Runtime, file: Path, name: str | None) -> None:
    """Register a local GGUF model FILE so it can be chosen by name (`myna --model NAME`,
    `myna config set model NAME`): its checksum and architecture are read from the file
    and kept in your data folder; the file stays where it is."""
    from assistant import catalogue
    from merger.formats.base_model import PERSONALIZABLE

    spec = catalogue.register(file, name)
    use = "Myna can personalize it" if spec.architecture in PERSONALIZABLE else "Myna chats with it (no adapters yet)"
    click.echo(f"Added {spec.name} ({spec.architecture}, {file}); {use}. Use it with `myna --model {spec.name}`.")


@models.command()
@click.argument("model", required=False, metavar="[NAME|PATH]")
@pass_runtime
def check(rt: Runtime, model: str | None) -> None:
    """Verify a model file (default: the configured model): present, GGUF, checksum. Also
    prepares the memory's embedding model for ONNX Runtime, once per machine."""
    from assistant import catalogue, embeddings

    spec = catalogue.resolve(model or rt.model_override or rt.settings.model)
    catalogue.verify(spec)
    click.echo(f"{spec.name}: OK ({spec.path})")
    if not embeddings.onnx_file(create=False).is_file():
        click.echo(f"Preparing {embeddings.MODEL_NAME} for ONNX Runtime (once, about 15 s)...")
    vector = embeddings.embedder().embed(["Myna checks its embedding model."])[0]
    click.echo(f"{embeddings.MODEL_NAME} (memory embeddings): OK ({embeddings.onnx_file()}, {len(vector)} dimensions)")
