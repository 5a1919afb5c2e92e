"""Independent units of work, run one after another in this process, or as Ray tasks on a
cluster (`--ray ADDRESS`): building a hub of thousands of authors' adapters outgrows one
machine, and Ray is the engine for it rather than a pool of our own.

A unit's input is plain data (paths, texts, settings) and its result is plain data that the
caller records as each unit finishes, exactly as on one machine, so a cluster run and a local
run leave the same files behind and resume the same way. Each Ray task declares the CPUs and
memory it needs, so Ray never starts more of them on a node than fit; a task whose worker
dies (killed, out of memory) is run again, up to `Needs.retries` times. Ray is imported only
here and only with an address: nothing on the chat path, and no local run, imports it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from assistant.errors import MynaError

U = TypeVar("U")
R = TypeVar("R")

# What a worker started by `ray start` would not otherwise see of this process's environment:
# where Myna's data, caches and corpora are, and the offline switches of the model libraries.
FORWARDED = ("MYNA_", "HF_", "TRANSFORMERS_", "TOKENIZERS_")


@dataclass(frozen=True)
class Needs:
    """What one unit needs of a node."""

    cpus: float = 1.0
    memory_gib: float = 3.0  # a training unit peaks at about 2.4 GiB (python -m bench training)
    retries: int = 3  # runs of a unit whose worker died, after the first


def run(
    work: Callable[[U], R],
    units: Sequence[U],
    *,
    ray_address: str | None = None,
    needs: Needs = Needs(),
    on_done: Callable[[int, R], None] | None = None,
    env: dict[str, str] | None = None,
) -> list[R]:
    """`work(unit)` for every unit, results in the units' order; `on_done(number, result)` as
    each finishes (in the order they finish on a cluster). `env`: variables the workers need
    beyond those this process forwards (FORWARDED), from the first connection on."""
    if ray_address is None:
        results = []
        for number, unit in enumerate(units):
            results.append(work(unit))
            if on_done:
                on_done(number, results[-1])
        return results
    ray = connect(ray_address, env)
    task = ray.remote(num_cpus=needs.cpus, memory=int(needs.memory_gib * 2**30), max_retries=needs.retries)(work)
    pending = {task.remote(unit): number for number, unit in enumerate(units)}
    results: list = [None] * len(units)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        number = pending.pop(ready[0])
        try:
            results[number] = ray.get(ready[0])
        except ray.exceptions.RayTaskError as exc:  # the unit's own error, raised as if here
            _cancel(ray, pending)
            raise exc.as_instanceof_cause() from None
        except ray.exceptions.RayError as exc:  # its worker died more times than it is retried
            _cancel(ray, pending)
            raise MynaError(
                f"A unit of work failed on the Ray cluster after {needs.retries} retries "
                f"({type(exc).__name__}); what finished is kept, and running the same command again continues."
            ) from None
        if on_done:
            on_done(number, results[number])
    return results


def _cancel(ray, pending: dict) -> None:
    for ref in pending:
        ray.cancel(ref)


def connect(address: str, extra: dict[str, str] | None = None):
    """Ray, connected to the cluster at `address` ("auto": the one this machine belongs to;
    "local": a new one on this machine, gone when this process ends); its workers see this
    process's FORWARDED variables and `extra`."""
    if address != "local" and "RAY_AUTH_MODE" not in os.environ and _token_available():
        # `ray start` makes a cluster that wants this machine's token (Ray 2.59 on), while a
        # client sends none unless told to (Ray reads this when imported); a cluster without
        # authentication accepts a client that sends one.
        os.environ["RAY_AUTH_MODE"] = "token"
    try:
        import ray
    except ImportError:
        raise MynaError("--ray needs Ray, which is not installed: pip install 'myna[cluster]'.") from None
    if ray.is_initialized():
        return ray
    _check_reachable(address)
    env = {key: value for key, value in os.environ.items() if key.startswith(FORWARDED)} | (extra or {})
    try:
        ray.init(
            address=None if address == "local" else address,
            runtime_env={"env_vars": env},
            include_dashboard=False,
            logging_level="warning",
            log_to_driver=False,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise MynaError(
            f"Could not reach a Ray cluster at '{address}' ({exc}); start one with `ray start --head` "
            "and give its address, or leave --ray out to run here."
        ) from None
    return ray


def _check_reachable(address: str) -> None:
    """One sentence at once for an address nothing listens on (Ray itself retries for minutes)."""
    if address in ("auto", "local"):
        return  # Ray says at once when this machine is in no cluster
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise MynaError(
            f"'{address}' is not a Ray address; give HOST:PORT (from `ray start --head`), 'auto' or 'local'."
        )
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise MynaError(
            f"Nothing answers at {address} ({exc.strerror or exc}); start a cluster with `ray start --head` "
            "and give the address it prints, or leave --ray out to run here."
        ) from None


def _token_available() -> bool:
    """Whether Ray would find an authentication token (its own order: the variable, the file
    it names, ~/.ray/auth_token)."""
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return True
    return (Path.home() / ".ray" / "auth_token").is_file()
