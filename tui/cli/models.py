"""`myna models`: the model catalogue."""

from __future__ import annotations

import click

from tui.cli.base import Runtime, pass_runtime


@click.group()
def models() -> None:
    """The models Myna knows, and checks of their files."""


@models.command("list")
@pass_runtime
def list_(rt: Runtime) -> None:
    """Catalogue models, with the configured one marked."""
    from assistant import catalogue

    current = rt.model_override or rt.settings.model
    for spec in catalogue.manifests():
        mark = "*" if spec.name == current else " "
        state = "installed" if spec.path.is_file() else f"missing: {spec.install_hint}"
        click.echo(f"{mark} {spec.name}  ({spec.license}; {state})")
        click.echo(f"    {spec.description}")
    if current not in {spec.name for spec in catalogue.manifests()}:
        click.echo(f"* {current}  (a file given by path)")


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
