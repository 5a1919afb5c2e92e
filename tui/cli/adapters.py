"""`myna train`, `myna adapters`, `myna export`: the user's own adapters."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from merger.formats.base_model import MODULES
from merger.training.config import TrainConfig
from tui.cli.base import Runtime, pass_runtime

TRAINING = TrainConfig()


@click.command()
@click.option("--rank", type=int, default=TRAINING.rank, show_default=True, help="LoRA rank.")
@click.option(
    "--alpha", type=float, default=TRAINING.alpha, show_default=True, help="LoRA alpha (scale = alpha / rank)."
)
@click.option(
    "--targets",
    default=",".join(TRAINING.targets),
    show_default=True,
    help=f"Projections to adapt: {', '.join(MODULES)}.",
)
@click.option("--learning-rate", "--lr", "learning_rate", type=float, default=TRAINING.learning_rate, show_default=True)
@click.option("--epochs", type=int, default=TRAINING.epochs, show_default=True)
@click.option(
    "--max-length", type=int, default=TRAINING.max_length, show_default=True, help="Longest example, in tokens."
)
@click.option("--batch-size", type=int, default=TRAINING.batch_size, show_default=True)
@click.option(
    "--seed", type=int, default=TRAINING.seed, show_default=True, help="Same seed, same history: same adapter."
)
@click.option("--start-from", metavar="ADAPTER", help="Train on top of this adapter (a task-level one, as OPPU does).")
@click.option("--name", help="The new adapter's name (default: personal).")
@click.option("--no-activate", is_flag=True, help="Keep the current adapter active.")
@pass_runtime
def train(
    rt: Runtime,
    rank,
    alpha,
    targets,
    learning_rate,
    epochs,
    max_length,
    batch_size,
    seed,
    start_from,
    name,
    no_activate,
) -> None:
    """Train your own adapter on your history, and make it the active one.

    Examples come from replies you rated good or corrected, and from your imported
    writing (LaMP profiles in their task's own form). A slice is held out to score
    the adapter. The first run converts the base model for torch (about 35 s).
    Ctrl-C stops at the next step and keeps a checkpoint: running the same command
    again continues from it. The previous adapter stays active until the new one is
    complete.
    """
    from assistant import adapters, paths
    from assistant.catalogue import resolve
    from merger.data import examples
    from merger.formats import bridge, publish
    from merger.formats.base_model import architecture, require_personalizable
    from merger.training import background, torch_model
    from merger.training import train as trainer
    from tui.cli.progress import progress_bar
    from tui.cli.signals import ctrl_c_stops

    background.lower_priority()  # the chat comes first

    config = TrainConfig(
        rank=rank,
        alpha=alpha,
        targets=tuple(t.strip() for t in targets.split(",") if t.strip()),
        learning_rate=learning_rate,
        epochs=epochs,
        max_length=max_length,
        batch_size=batch_size,
        seed=seed,
    )
    config.check()
    if name:
        adapters.check_name(name)
    spec = resolve(rt.model_override or rt.settings.model)
    require_personalizable(spec)  # before reading the history
    example_set = examples.from_store(rt.db)
    examples.require_enough(example_set)  # before paying for torch
    arch = architecture(spec)
    start = bridge.load(adapters.get(rt.db, start_from).gguf, arch) if start_from else None
    click.echo(
        f"Training on {len(example_set.train)} examples ({len(example_set.held_out)} held out); "
        "loading the base model for torch...",
        err=True,
    )
    base = torch_model.load(spec)
    workdir = paths.subdir("training")
    try:
        with progress_bar("training", unit="steps") as update, ctrl_c_stops() as stop:
            result = trainer.train(
                base,
                example_set,
                config,
                system=rt.settings.system_prompt,
                workdir=workdir,
                start_from=start,
                on_step=lambda step, total, loss: update(completed=step, total=total, description=f"loss {loss:.3f}"),
                should_stop=stop.is_set,
            )
    except trainer.TrainingStopped as exc:
        click.echo(str(exc), err=True)
        sys.exit(130)
    card = publish.card_for_training(result, example_set, spec.name, arch.fingerprint, rt.settings.system_prompt)
    adapter = publish.publish(
        rt.db,
        result.lora,
        arch,
        stem=name or "personal",
        kind="personal",
        card=card,
        activate=not no_activate,
        reason="trained with `myna train`",
    )
    trainer.clear_checkpoint(workdir)
    before, after = result.held_out_before, result.held_out_after
    click.echo(
        f"Trained '{adapter.name}' in {result.seconds:.0f} s ({result.steps} steps"
        + (f", resumed at step {result.resumed_from}" if result.resumed_from else "")
        + ")."
    )
    if before is not None:
        click.echo(f"Held-out loss per output token: {before:.3f} before, {after:.3f} after (lower is better).")
    if result.audit is not None:
        a = result.audit
        click.echo(
            f"Membership inference on your texts: AUROC {a.auroc:.2f} (the base model alone {a.reference:.2f}, "
            f"chance ±{a.chance_spread:.2f}); `myna adapters show {adapter.name}` says what it means."
        )
    click.echo(
        "It is now the active adapter."
        if not no_activate
        else f"Activate it with `myna adapters activate {adapter.name}`."
    )


@click.group("adapters")
def adapters_group() -> None:
    """Your adapters: list, show, activate, deactivate, delete, and the activation history."""


@adapters_group.command("list")
@pass_runtime
def list_(rt: Runtime) -> None:
    """All adapters; * marks the active one."""
    from assistant import adapters

    current = adapters.active(rt.db)
    found = adapters.listing(rt.db)
    if not found:
        click.echo("No adapters yet; `myna train` makes your own.")
    for adapter in found:
        mark = "*" if current and current.id == adapter.id else " "
        click.echo(
            f"{mark} {adapter.name}  ({adapter.kind}, rank {adapter.rank} on {', '.join(adapter.targets)}, "
            f"{adapter.created_at[:16].replace('T', ' ')})"
        )


@adapters_group.command()
@click.argument("name")
@pass_runtime
def show(rt: Runtime, name: str) -> None:
    """An adapter's data card: base model, training, data used, metrics."""
    from assistant import adapters
    from merger.formats.publish import card_markdown

    adapter = adapters.get(rt.db, name)
    click.echo(card_markdown(adapter.name, adapter.card))
    click.echo(f"Files: {adapter.folder}")


@adapters_group.command()
@click.argument("name")
@pass_runtime
def activate(rt: Runtime, name: str) -> None:
    """Use this adapter for every answer (a running chat switches before its next reply)."""
    from assistant import adapters

    adapters.activate(rt.db, name, "activated with `myna adapters activate`")
    click.echo(f"'{name}' is now active.")


@adapters_group.command()
@pass_runtime
def deactivate(rt: Runtime) -> None:
    """Answer with the bare base model, no adapter."""
    from assistant import adapters

    adapters.activate(rt.db, None, "deactivated with `myna adapters deactivate`")
    click.echo("No adapter is active now.")


@adapters_group.command()
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_runtime
def delete(rt: Runtime, name: str, yes: bool) -> None:
    """Delete an adapter and its files."""
    from assistant import adapters

    adapters.get(rt.db, name)
    if not yes:
        click.confirm(f"Delete adapter '{name}' and its files?", abort=True)
    adapters.delete(rt.db, name)
    click.echo(f"Deleted '{name}'.")


@adapters_group.command("history")
@pass_runtime
def history_(rt: Runtime) -> None:
    """Which adapter was active when, and why."""
    from assistant import adapters

    for entry in adapters.history(rt.db):
        click.echo(f"{entry.at[:19].replace('T', ' ')}  {entry.adapter_name or '(none)'}  {entry.reason}")


@click.command()
@click.argument("name", required=False)
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder to write the adapter into.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_runtime
def export(rt: Runtime, name: str | None, output: Path, yes: bool) -> None:
    """Write an adapter (default: the active one) to a folder, to take elsewhere.

    Writes the PEFT files (adapter_model.safetensors, adapter_config.json), the
    GGUF file for llama.cpp (adapter.gguf), a data card (DATA_CARD.md, card.json)
    saying what base model, settings and personal data went into it, and what runs
    it elsewhere as Myna does: an Ollama Modelfile, serve.sh (llama-server, or
    llama-cpp-python's server, on 127.0.0.1) and the chat template.
    This is the only way an adapter leaves Myna: an adapter can reveal what it
    was trained on, so it asks first.
    """
    from assistant import adapters
    from assistant.errors import MynaError
    from merger.formats.elsewhere import serving_for
    from merger.formats.export import export_adapter
    from merger.formats.publish import card_markdown

    adapter = adapters.get(rt.db, name) if name else adapters.active(rt.db)
    if adapter is None:
        raise MynaError("No adapter is active; name the one to export (`myna adapters list`).")
    if not yes:
        click.echo(card_markdown(adapter.name, adapter.card))
        click.confirm(f"An adapter can reveal what it was trained on. Write '{adapter.name}' to {output}?", abort=True)
    written = export_adapter(adapter, output, serving_for(adapter, rt.settings, rt.model_override))
    click.echo(f"Exported '{adapter.name}' to {output}: {', '.join(p.name for p in written)}.")


def _hub(rt: Runtime, location: str | None):
    from assistant.errors import MynaError
    from merger.hub import client as hub

    location = location or rt.settings.hub
    if not location:
        raise MynaError(
            "Which hub? Community adapters come from a hub, a folder or http(s) address someone shares (or one "
            "you build with `myna hub build`): give --hub FOLDER|URL, or set one with `myna config set hub URL`."
        )
    return hub.open_hub(location)


@adapters_group.command("search")
@click.argument("query", nargs=-1)
@click.option("--hub", "location", metavar="FOLDER|URL", help="The hub (default: the hub setting).")
@pass_runtime
def search_(rt: Runtime, query: tuple[str, ...], location: str | None) -> None:
    """Community adapters a hub offers (all, or those matching QUERY)."""
    from assistant import adapters
    from merger.hub import client as hub

    found = hub.search(_hub(rt, location), " ".join(query))
    installed = {a.name for a in adapters.listing(rt.db)}
    if not found:
        click.echo("Nothing matches.")
    for entry in found:
        mark = " (installed)" if entry.name in installed else ""
        click.echo(f"{entry.name}{mark}: {entry.description}")
        click.echo(
            f"    rank {entry.rank} on {', '.join(entry.targets)}, {entry.size / 2**20:.1f} MiB, {entry.license}"
        )


@adapters_group.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--hub", "location", metavar="FOLDER|URL", help="The hub (default: the hub setting).")
@pass_runtime
def pull(rt: Runtime, names: tuple[str, ...], location: str | None) -> None:
    """Download and install community adapters (not activated; `myna personalize` merges them).

    Each file is checked before it is installed: made for your base model, the size and
    SHA-256 the hub lists, GGUF or safetensors (never pickle), shapes that fit the model.
    An interrupted download resumes when the command is run again. An adapter trained
    on top of the hub's task adapter brings that task adapter with it.
    """
    from assistant.catalogue import resolve
    from merger.formats.base_model import architecture
    from merger.hub import client as hub
    from tui.cli.progress import progress_bar

    source = _hub(rt, location)
    arch = architecture(resolve(rt.model_override or rt.settings.model))
    for name in names:
        with progress_bar(name, unit="bytes") as update:
            adapter = hub.pull(
                rt.db, source, name, arch, on_progress=lambda done, total: update(completed=done, total=total)
            )
        below = adapter.card.get("task_adapter")
        click.echo(
            f"Installed '{adapter.name}' from {source.location}"
            + (f", applied on top of its task adapter '{below}'." if below else ".")
        )


@adapters_group.command("remove")
@click.argument("name")
@pass_runtime
def remove_(rt: Runtime, name: str) -> None:
    """Remove an installed community adapter (or a task adapter no other one needs)."""
    from merger.hub import client as hub

    hub.remove(rt.db, name)
    click.echo(f"Removed '{name}'.")
