"""`myna personalize` and `myna schedule`: the nightly merge of community adapters."""

from __future__ import annotations

import sys

import click

from merger.nightly.config import BACKENDS, METRICS, PersonalizeConfig
from merger.search.options import MERGES, OPTIMIZERS, PRIVACY_TERMS
from tui.cli.base import Runtime, pass_runtime

DEFAULTS = PersonalizeConfig()


@click.command()
@click.option("--budget", type=int, default=DEFAULTS.budget, show_default=True, help="Candidate merges to evaluate.")
@click.option(
    "--adapters",
    "max_adapters",
    type=int,
    default=DEFAULTS.max_adapters,
    show_default=True,
    help="How many of the most relevant community adapters to merge.",
)
@click.option(
    "--alpha",
    type=float,
    default=DEFAULTS.alpha,
    show_default=True,
    help="Privacy penalty: how much similarity to any one sharer's outputs costs.",
)
@click.option(
    "--privacy",
    type=click.Choice(PRIVACY_TERMS),
    default=DEFAULTS.privacy,
    show_default=True,
    help="What the penalty measures: answers like the closest sharer's (probes), PriME's mean over sharers, "
    "that mean beyond what the model without sharers already shares with them (excess), how much likelier the "
    "sharers' own answers become (likelihood), or the merge weights' L1 norm (weights: nothing generated).",
)
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=DEFAULTS.optimizer, show_default=True)
@click.option(
    "--merge",
    type=click.Choice(MERGES),
    default=DEFAULTS.merge,
    show_default=True,
    help="elementwise: sum of A and of B matrices (PriME); updates: sum of B·A.",
)
@click.option(
    "--per-layer",
    is_flag=True,
    default=DEFAULTS.per_layer,
    help="One weight per adapter and layer (PriME's option), not one per adapter.",
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default=DEFAULTS.backend,
    show_default=True,
    help="How candidates are scored: torch (fastest), llama.cpp with a merged file, or llama.cpp scales.",
)
@click.option("--metric", type=click.Choice(METRICS), default=DEFAULTS.metric, show_default=True)
@click.option(
    "--train-own/--merge-only",
    default=DEFAULTS.train_own,
    show_default=True,
    help="Also train your own adapter on top of the best merge (OPPU), or publish the merge alone.",
)
@click.option(
    "--own-alone/--no-own-alone",
    default=DEFAULTS.own_alone,
    show_default=True,
    help="Also train your own adapter without the merge under it, and keep whichever of the two answers your "
    "held-out examples better.",
)
@click.option(
    "--check-memory/--no-check-memory",
    default=DEFAULTS.check_memory,
    show_default=True,
    help="Judge the winner before publishing on your held-out examples asked as you ask Myna: with what your "
    "memory recalls for each (its own text left out).",
)
@click.option(
    "--min-examples",
    type=click.IntRange(0),
    default=DEFAULTS.min_examples,
    show_default=True,
    help="With a smaller history, do no adapter work (memory alone answers better).",
)
@click.option("--if-idle", is_flag=True, help="Skip (and record why) when on battery or the machine is busy.")
@click.option(
    "--again",
    is_flag=True,
    help="Run even if nothing changed since the last run (it would find the same adapter, so it is skipped).",
)
@click.option("--last", is_flag=True, help="Only show the last runs.")
@pass_runtime
def personalize(
    rt: Runtime,
    budget,
    max_adapters,
    alpha,
    privacy,
    optimizer,
    merge,
    per_layer,
    backend,
    metric,
    train_own,
    own_alone,
    check_memory,
    min_examples,
    if_idle,
    again,
    last,
) -> None:
    """Merge community adapters into one that fits you, scored on your own history.

    An evolutionary search (nevergrad) looks for the merge weights that best predict
    your held-out examples, minus a penalty for imitating any one sharer. The winner
    is checked in llama.cpp against your current adapter and becomes active only if
    it is better. Nothing leaves this machine. Ctrl-C stops the run; a killed run
    leaves the active adapter as it was.
    """
    from merger.nightly import runs

    if last:
        runs.mark_interrupted(rt.db)
        _show_runs(runs.recent(rt.db, 5))
        return
    from merger.nightly import schedule
    from merger.nightly.personalize import personalize as run
    from merger.training import background
    from tui.cli.progress import progress_bar
    from tui.cli.signals import ctrl_c_stops

    background.lower_priority()  # the chat comes first (issue 15)

    if if_idle:
        busy = schedule.machine_busy()
        if busy:
            runs.skipped(rt.db, f"skipped: {busy}")
            click.echo(f"Skipped: {busy}.")
            return
    config = PersonalizeConfig(
        budget=budget,
        max_adapters=max_adapters,
        alpha=alpha,
        privacy=privacy,
        optimizer=optimizer,
        merge=merge,
        per_layer=per_layer,
        backend=backend,
        metric=metric,
        train_own=train_own,
        own_alone=own_alone,
        check_memory=check_memory,
        min_examples=min_examples,
    )
    try:
        with progress_bar("starting", unit="") as update, ctrl_c_stops() as stop:
            outcome = run(
                rt.db,
                rt.settings,
                config,
                model=rt.model_override,
                should_stop=stop.is_set,
                again=again,
                on_progress=lambda phase, done, total: update(description=phase, completed=done, total=max(total, 1)),
            )
    except KeyboardInterrupt:
        click.echo("Stopped; the active adapter is unchanged.", err=True)
        sys.exit(130)
    if outcome.adapters:
        click.echo(f"Merged {', '.join(outcome.adapters)} with weights {outcome.weights}.")
    if outcome.similarity_after is not None:
        term = "the closest sharer" if config.privacy == "closest" else "the sharers (mean)"
        click.echo(
            f"Similarity to {term}: {outcome.similarity_before:.3f} before, {outcome.similarity_after:.3f} after."
        )
    click.echo(outcome.message[0].upper() + outcome.message[1:] + f" ({outcome.seconds / 60:.1f} min).")


def _show_runs(found) -> None:
    if not found:
        click.echo("No personalization run yet.")
    for run in found:
        click.echo(run.describe())


@click.group()
def schedule() -> None:
    """A nightly personalization run: install, remove, status."""


@schedule.command()
@click.option("--at", "when", default="03:30", show_default=True, metavar="HH:MM")
def install(when: str) -> None:
    """Run `myna personalize --if-idle` every night (systemd user timer, else cron)."""
    from assistant.errors import MynaError
    from merger.nightly import schedule as scheduler

    try:
        hour, minute = (int(part) for part in when.split(":"))
    except ValueError:
        raise MynaError(f"'{when}' is not a time; give HH:MM, e.g. 03:30.") from None
    click.echo(f"Scheduled: {scheduler.install(hour, minute)}.")


@schedule.command()
def remove() -> None:
    """Stop the nightly run."""
    from merger.nightly import schedule as scheduler

    click.echo(f"Removed: {scheduler.remove()}.")


@schedule.command()
@pass_runtime
def status(rt: Runtime) -> None:
    """What is scheduled, and how the last runs went."""
    from assistant import scheduler as jobs
    from assistant.paths import data_dir
    from merger.nightly import runs
    from merger.nightly import schedule as scheduler
    from tui.cli.serve import login_job

    click.echo(scheduler.status() or "Nothing is scheduled; `myna schedule install` sets up a nightly run.")
    at_login = jobs.status(login_job(data_dir()))
    if at_login:
        click.echo(f"At login, `myna serve`: {at_login}")
    runs.mark_interrupted(rt.db)
    _show_runs(runs.recent(rt.db, 5))
