from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.fakes import FakeEngine

REPO = Path(__file__).resolve().parent.parent
MYNA = str(Path(sys.executable).with_name("myna"))


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory):
    """Session fixtures (the real engine, cached base-model facts) live here, never in the
    user's real data folder; each test then gets a folder of its own."""
    with pytest.MonkeyPatch.context() as patch:
        home = tmp_path_factory.mktemp("session-home")
        patch.setenv("MYNA_HOME", str(home))
        yield home


@pytest.fixture(autouse=True)
def myna_home(tmp_path, monkeypatch) -> Path:
    """Every test gets its own data directory: never the user's real one."""
    home = tmp_path / "myna-home"
    monkeypatch.setenv("MYNA_HOME", str(home))
    monkeypatch.delenv("MYNA_MODEL", raising=False)
    return home


@pytest.fixture
def db(myna_home):
    from assistant.store import open_database

    database = open_database()
    yield database
    database.conn.close()


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture(scope="session")
def real_engine():
    """The default model in llama.cpp, loaded once for the whole session."""
    from assistant.catalogue import resolve
    from assistant.engine import Engine
    from assistant.settings import Settings

    return Engine(resolve(Settings().model), context_size=2048, threads=2)


@pytest.fixture(scope="session")
def base_arch(real_engine):
    from merger.formats.base_model import architecture

    return architecture(real_engine.spec)


@pytest.fixture(scope="session")
def adapter_files(base_arch, tmp_path_factory):
    """Two small random GGUF adapters for the base model (rank 4, all projections)."""
    from merger.formats import gguf_lora
    from merger.formats.lora import random_lora

    folder = tmp_path_factory.mktemp("adapters")
    return [
        gguf_lora.write(random_lora(base_arch, rank=4, seed=seed), folder / f"random-{seed}.gguf", base_arch)
        for seed in (1, 2)
    ]


@pytest.fixture(scope="session")
def torch_base(real_engine):
    """The base model in torch (the first load in a session converts and caches it)."""
    from merger.training import torch_model

    return torch_model.load(real_engine.spec)


def share_torch_cache(session_home: Path, home: Path, copy: bool = False) -> None:
    """Let a run with its own MYNA_HOME reuse the session's converted base model (converting
    it costs about a minute; the session's first load, the torch_base fixture, tests that) and
    its reading of the model file's header (seconds: architecture-*.json, file-hashes.json).
    `copy` leaves real files (hard links where it can) in a home that outlives the session."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)  # private, as Myna makes its data folder
    (home / "cache").mkdir(mode=0o700, exist_ok=True)
    for found in (session_home / "cache").glob("*.json"):
        if not (home / "cache" / found.name).exists():
            shutil.copy2(found, home / "cache" / found.name)
    for folder in (session_home / "cache").glob("torch-base-*"):
        target = home / "cache" / folder.name
        if target.exists():
            continue
        if copy:
            shutil.copytree(folder, target, copy_function=link_or_copy)
        else:
            target.symlink_to(folder)


def link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copy2(source, target)


@pytest.fixture
def shared_base(session_home, myna_home, torch_base) -> None:
    """This test's data folder starts with the session's converted base model."""
    share_torch_cache(session_home, myna_home)


@pytest.fixture(scope="session")
def bench_home(session_home, torch_base):
    """The benchmark's own data folder (bench/lamp/run.py), given the session's converted base
    model: the first run in a clean clone would otherwise convert it again."""
    from bench.common import RESULTS

    share_torch_cache(session_home, RESULTS / "cache" / "home", copy=True)


@pytest.fixture(scope="session")
def six_item_run(bench_home, tmp_path_factory):
    """`python -m bench lamp --quick` on the six-item LaMP_4 pair (tests/lamp_pairs.py), its
    SIX_ITEM_ROWS only, in this process: the folder of its report and its results."""
    from bench.common import RESULTS
    from bench.lamp.cache import run_name
    from bench.lamp.plan import QUICK
    from tests.lamp_pairs import SIX_ITEM_ROWS, six_item_pair

    pair = six_item_pair(tmp_path_factory.mktemp("six-item"))
    command = [sys.executable, "-m", "bench", "lamp", "--quick", "--lamp", *map(str, pair), "--methods", SIX_ITEM_ROWS]
    done = run_watched(command, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    folder = RESULTS / run_name(QUICK.quick, pair) / "some-methods" / "LaMP_4"
    return folder, json.loads((folder / "results.json").read_text())


@pytest.fixture
def clean_engine(real_engine):
    """The real engine with no adapter applied, and again so after the test."""
    real_engine.set_adapters([])
    yield real_engine
    real_engine.set_adapters([])


def run_env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, MYNA_HOME=str(home), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def pytest_addoption(parser):
    parser.addoption(
        "--long", action="store_true", help="More iterations for the fuzz and fault suites (minutes, not seconds)."
    )


def pytest_configure(config):
    from hypothesis import HealthCheck, settings

    # Seeded (derandomized) so a failure in CI is the same failure on a laptop; --long runs more.
    common = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
    settings.register_profile("myna", max_examples=40, **common)
    settings.register_profile("myna-long", max_examples=600, **common)
    settings.load_profile("myna-long" if config.getoption("--long") else "myna")


@pytest.fixture(scope="session")
def long_run(request) -> bool:
    return bool(request.config.getoption("--long"))


def run_watched(command: list, *, quiet_limit: float = 1800, **kwargs) -> subprocess.CompletedProcess:
    """Run `command` to its end however long a busy machine makes it take, failing only when
    it stops making progress: nothing printed for `quiet_limit` seconds is a hang."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)
    printed: dict[str, list] = {"out": [], "err": []}
    last = [time.monotonic()]

    def pump(stream, into: list) -> None:
        for line in stream:
            into.append(line)
            last[0] = time.monotonic()

    readers = [
        threading.Thread(target=pump, args=(proc.stdout, printed["out"]), daemon=True),
        threading.Thread(target=pump, args=(proc.stderr, printed["err"]), daemon=True),
    ]
    for reader in readers:
        reader.start()
    while proc.poll() is None:
        if time.monotonic() - last[0] > quiet_limit:
            proc.kill()
            proc.wait()
            pytest.fail(f"{command} printed nothing for {quiet_limit:.0f} s: it hangs")
        time.sleep(0.5)
    for reader in readers:
        reader.join()
    empty = "" if kwargs.get("text") else b""
    return subprocess.CompletedProcess(command, proc.returncode, empty.join(printed["out"]), empty.join(printed["err"]))
