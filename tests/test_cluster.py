"""Ray as the engine for per-author work (merger/cluster/units.py), on a real cluster started as a
user would start one: `ray start --head` on 127.0.0.1 with 2 CPUs."""

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from assistant.errors import MynaError
from merger.cluster import units as cluster
from tests.conftest import MYNA, run_env, run_watched
from tests.lamp_pairs import SIX_ITEM_ROWS, six_item_pair

RAY = str(Path(sys.executable).with_name("ray"))


@pytest.fixture(scope="module")
def ray_head():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [RAY, "start", "--head", "--num-cpus", "2", "--node-ip-address", "127.0.0.1", "--port", str(port)]
    started = subprocess.run(
        [*command, "--include-dashboard", "false", "--disable-usage-stats"], capture_output=True, text=True, timeout=300
    )
    assert started.returncode == 0, started.stdout + started.stderr
    yield f"127.0.0.1:{port}"
    subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=300)


@pytest.fixture
def ray_address(ray_head):
    """The cluster's address; this process connects afresh in each test (the connection
    carries the test's data folder to the workers) and disconnects after it."""
    yield ray_head
    import ray

    ray.shutdown()


def test_units_run_on_the_cluster_as_they_do_here(ray_address):
    units = ["1", "[2, 3]", '{"a": 4}']
    order: list[int] = []
    finished: list = []
    here = cluster.run(json.loads, units, on_done=lambda number, _: order.append(number))
    there = cluster.run(json.loads, units, ray_address=ray_address, on_done=lambda _, result: finished.append(result))
    assert here == there == [1, [2, 3], {"a": 4}] and order == [0, 1, 2]
    assert sorted(map(json.dumps, finished)) == sorted(map(json.dumps, there))  # each reported as it finished
    with pytest.raises(json.JSONDecodeError):  # a unit's own error, as if raised here
        cluster.run(json.loads, ["[5]", "{"], ray_address=ray_address)


def test_an_address_nothing_answers_at_is_one_sentence(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(MynaError, match="Nothing answers at 127.0.0.1"):
        cluster.connect(f"127.0.0.1:{port}")
    done = subprocess.run(
        [MYNA, "hub", "build", str(tmp_path / "hub"), "--ray", "not-an-address"],
        env=run_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "is not a Ray address" in done.stderr and "Traceback" not in done.stderr


@contextlib.contextmanager
def killing_one(task: str, busy_for: float = 4.0):
    """Kills the first worker to run `task` for `busy_for` seconds (a worker names itself after
    the task it runs) while the block runs; yields the list of the pids it killed."""
    killed: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        busy_since: dict[int, float] = {}
        while not stop.is_set():
            for process in psutil.process_iter(["cmdline"]):
                if task in " ".join(process.info["cmdline"] or []):
                    if time.time() - busy_since.setdefault(process.pid, time.time()) > busy_for:
                        process.kill()
                        killed.append(process.pid)
                        return
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield killed
    finally:
        stop.set()
        watcher.join(timeout=30)


def authors() -> dict[str, list[tuple[str, str | None, str]]]:
    topics = {
        "cats": "A cat sleeps in the sun by the window and purrs when someone strokes its fur.",
        "trains": "The night train leaves at ten, rolls past sleeping towns and reaches the coast by dawn.",
        "bread": "The baker kneads the dough before sunrise and the loaves cool on the sill by seven.",
    }
    return {
        name: [("note", None, f"# {name.title()} {i}\n{i} times: {text}") for i in range(10)]
        for name, text in topics.items()
    }


def test_a_hub_builds_on_the_cluster_as_here_even_when_a_worker_is_killed(
    ray_address, shared_base, torch_base, base_arch, tmp_path
):
    """Three authors and the task adapter, one Ray task each: the same hub as a build in this
    process, although one task's worker is killed in the middle of its training (Ray runs
    that task again)."""
    from merger.formats import gguf_lora
    from merger.hub import build as hub_build
    from merger.training.train import TrainConfig

    config = TrainConfig(epochs=1, max_length=64, rank=4, alpha=4.0, targets=("attn_q", "attn_v"), learning_rate=1e-3)
    common = dict(base=torch_base, arch=base_arch, system="", config=config)
    here = {e.name: e for e in hub_build.build(tmp_path / "here", authors(), **common)}

    with killing_one("train_author") as killed:
        there = {e.name: e for e in hub_build.build(tmp_path / "there", authors(), **common, ray_address=ray_address)}
    assert killed, "no training was under way long enough to be killed"
    assert set(there) == set(here) == {"task-adapter", "cats", "trains", "bread"}
    for name, entry in here.items():
        other = there[name]
        assert (other.kind, other.task_adapter, other.rank, other.targets) == (
            entry.kind,
            entry.task_adapter,
            entry.rank,
            entry.targets,
        )
        assert other.data_card["final_train_loss"] == pytest.approx(entry.data_card["final_train_loss"], rel=0.02)
        ours = gguf_lora.read(tmp_path / "here" / entry.file, base_arch).weights
        theirs = gguf_lora.read(tmp_path / "there" / other.file, base_arch).weights
        assert ours.keys() == theirs.keys()
        assert max(float(np.abs(ours[k][1] - theirs[k][1]).max()) for k in ours) < 1e-2, name
    index = (tmp_path / "there" / "index.json").read_text()
    assert all(name in index for name in here)


def test_the_benchmark_runs_on_the_cluster_as_here_even_when_a_worker_is_killed(ray_head, six_item_run, tmp_path):
    """`python -m bench lamp --ray`: each user's adapter, merges and answers are Ray tasks, and
    one task's worker is killed mid-way; the run gives the same answers and scores as the same
    run in one process (the six-item pair, under another name so that it has a cache of its own)."""
    from bench.common import RESULTS
    from bench.lamp.cache import run_name
    from bench.lamp.plan import QUICK

    _, here = six_item_run
    pair = six_item_pair(tmp_path, "LaMP_4_on_ray")
    # A cache from an earlier run in this checkout would leave no unit to kill.
    for done_before in [
        RESULTS / run_name(QUICK.quick, pair),
        *(RESULTS / "cache").glob(run_name(QUICK.quick, pair) + "-*"),
    ]:
        shutil.rmtree(done_before, ignore_errors=True)
    command = [sys.executable, "-m", "bench", "lamp", "--quick", "--lamp", *map(str, pair), "--methods", SIX_ITEM_ROWS]
    with killing_one("run_unit") as killed:
        done = run_watched([*command, "--ray", ray_head], text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert killed, "no unit was under way long enough to be killed"
    assert "3 users on the Ray cluster" in done.stdout and "done on the cluster" in done.stdout
    there = json.loads((RESULTS / run_name(QUICK.quick, pair) / "some-methods" / "LaMP_4" / "results.json").read_text())
    ours, theirs = here["tasks"]["LaMP_4"], there["tasks"]["LaMP_4"]
    assert theirs["cold_start"] == ours["cold_start"] and theirs["users"] == ours["users"]
    assert set(theirs["methods"]) == set(ours["methods"])
    for method, row in ours["methods"].items():
        other = theirs["methods"][method]
        assert other["answers"] == row["answers"], method
        assert (other["overall"], other["per_user"], other["gain"]) == (row["overall"], row["per_user"], row["gain"])
