"""Kill -9 at random points, and a full disk, during every command that writes.

Each kill is followed by the checks a user would care about: the database passes SQLite's
integrity check, nothing is stored twice, no adapter is registered with missing files, the
active adapter is either the one from before (byte for byte) or a complete new one, and the
next run finishes. Kill points are seeded; `pytest --long` kills more often.

The full disk is a real one: a small tmpfs (this needs root, as CI and the development
machine run; elsewhere the disk-full tests fail saying so).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from merger.formats.export import FILES as ADAPTER_FILES
from tests.conftest import MYNA, run_env, run_watched, share_torch_cache

pytestmark = pytest.mark.real


def kills(long_run: bool, usual: int) -> int:
    return max(usual * 4, 24) if long_run else usual


def kill_at_random_points(command, env, *, times: int, window: tuple[float, float], seed: int, after_each) -> int:
    """Start `command(attempt)` `times` times, SIGKILL it at a seeded random moment within
    `window` seconds (unless it finished first), and check after each; returns the kills. An
    attempt that finished before its kill narrows the window to its own duration: the machine
    got faster than when the window was measured (a neighbour's load ended), and the next
    kills should still land mid-operation."""
    rng = random.Random(seed)
    killed = 0
    low, high = window
    for attempt in range(times):
        started = time.monotonic()
        proc = subprocess.Popen(
            command(attempt), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            proc.wait(timeout=rng.uniform(low, high))
            high = max(low * 2, min(high, 0.9 * (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed += 1
        after_each(attempt)
    return killed


def timed(command: list[str], env) -> float:
    start = time.monotonic()
    done = run_watched(command, env=env, text=True)
    assert done.returncode == 0, done.stderr
    return time.monotonic() - start


def check_store(home: Path) -> sqlite3.Connection:
    """What must hold after any kill or failed write."""
    conn = sqlite3.connect(home / "myna.db")
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    twice = conn.execute(
        """SELECT COUNT(*) FROM (SELECT 1 FROM snippets WHERE source_id IS NOT NULL
           GROUP BY source_id, position HAVING COUNT(*) > 1)"""
    ).fetchone()[0]
    assert twice == 0, "a snippet was stored twice"
    empty = conn.execute(
        "SELECT COUNT(*) FROM conversations c WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id)"
    ).fetchone()[0]
    assert empty == 0, "a conversation was left without its messages"
    for name, folder in conn.execute("SELECT name, folder FROM adapters"):
        missing = [f for f in ADAPTER_FILES if not (Path(folder) / f).is_file()]
        assert not missing, f"adapter {name} is registered without {missing}"
    return conn


def active_adapter(home: Path) -> tuple[str, str] | None:
    from assistant import adapters
    from assistant.store import open_database

    db = open_database(home / "myna.db")
    try:
        current = adapters.active(db)
        return None if current is None else (current.name, hashlib.sha256(current.gguf.read_bytes()).hexdigest())
    finally:
        db.conn.close()


# --- import, ask, pull ---------------------------------------------------------------------


def note_file(folder: Path, number: int, paragraphs: int = 40) -> Path:
    rng = random.Random(number)
    words = "garden basil window dentist train river lamp blue quiet market letter winter".split()
    text = "\n\n".join(
        f"Note {number}.{i}: " + " ".join(rng.choice(words) for _ in range(30)) + "." for i in range(paragraphs)
    )
    path = folder / f"notes-{number:02d}.md"
    path.write_text(text)
    return path


def test_killed_imports_keep_the_store_whole_and_the_next_import_completes(tmp_path, long_run):
    home, files = tmp_path / "home", tmp_path / "files"
    files.mkdir()
    env = run_env(home)
    times = kills(long_run, 20)
    paths = [note_file(files, n) for n in range(times + 2)]
    # The first import also creates the store (and may load what later ones find ready); the kills are aimed
    # within an import like the ones they interrupt, timed on the second.
    timed([MYNA, "import", str(paths[0])], env)
    duration = timed([MYNA, "import", str(paths[1])], env)
    killed = kill_at_random_points(
        lambda attempt: [MYNA, "import", str(paths[attempt + 2])],
        env,
        times=times,
        window=(0.05, duration),
        seed=1,
        after_each=lambda attempt: check_store(home).close(),
    )
    assert killed >= times // 2, "the kills should mostly land mid-import"
    done = run_watched([MYNA, "import", str(files)], env=env, text=True)
    assert done.returncode == 0, done.stderr
    conn = check_store(home)
    from assistant.memory import chunking, readers

    expected = sum(len(chunking.split(r.text)) for p in paths for r in readers.read(p).records)
    assert conn.execute("SELECT COUNT(*) FROM sources WHERE status = 'complete'").fetchone()[0] == len(paths)
    assert conn.execute("SELECT COUNT(*) FROM snippets").fetchone()[0] == expected
    assert conn.execute(
        "SELECT COUNT(*) FROM snippets s WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.content_hash = s.content_hash)"
    ).fetchone() == (0,), "every snippet has its vector"


def test_killed_answers_leave_whole_conversations_and_the_next_answer_works(tmp_path, long_run):
    home = tmp_path / "home"
    env = run_env(home)
    question = ["ask", "--max-tokens", "120", "--temperature", "0.8"]
    duration = timed([MYNA, *question, "Tell me a story about a lighthouse."], env)
    times = kills(long_run, 20)
    killed = kill_at_random_points(
        lambda attempt: [MYNA, *question, f"Tell me story number {attempt} about a river."],
        env,
        times=times,
        window=(0.05, duration),
        seed=2,
        after_each=lambda attempt: check_store(home).close(),
    )
    assert killed >= times // 2
    done = run_watched([MYNA, "ask", "--max-tokens", "5", "Hello"], env=env, text=True)
    assert done.returncode == 0, done.stderr
    conn = check_store(home)
    assert conn.execute("SELECT COUNT(*) FROM messages WHERE status = 'streaming'").fetchone() == (0,)
    pairs = conn.execute("SELECT conversation_id, GROUP_CONCAT(role) FROM messages GROUP BY conversation_id").fetchall()
    assert pairs and all(roles == "user,assistant" for _, roles in pairs), "question and reply land together"


def test_killed_pulls_install_nothing_half_and_the_next_pull_completes(tmp_path, base_arch, long_run):
    from merger.formats import gguf_lora
    from merger.formats.lora import random_lora
    from merger.hub import client as hub
    from merger.hub.server import RangeHandler, make_server, serve_in_background
    from tests.test_hub import make_hub

    class Slow(RangeHandler):
        """A hub on a slow line: about a second per adapter."""

        def copyfile(self, source, outputfile):
            with contextlib.suppress(ConnectionError):  # the client was killed mid-download
                while chunk := source.read(1 << 15):
                    outputfile.write(chunk)
                    time.sleep(0.008)

    folder = tmp_path / "hub"
    make_hub(folder, base_arch, names=("alpha",))
    modules = ("attn_q", "attn_v", "ffn_up")
    big = gguf_lora.write(
        random_lora(base_arch, rank=8, seed=3, modules=modules), folder / "adapters" / "alpha.gguf", base_arch
    )
    index = hub.open_hub(str(folder))
    entry = index.entries[0]
    from assistant.hashing import sha256_file

    hub.write_index(
        folder,
        "slow hub",
        [
            hub.Entry(
                **{
                    **entry.__dict__,
                    "sha256": sha256_file(big),
                    "size": big.stat().st_size,
                    "rank": 8,
                    "targets": ["attn_k", "attn_output", "attn_q", "attn_v", "ffn_down", "ffn_gate", "ffn_up"],
                }
            )
        ],
    )
    server = make_server(folder, handler=Slow)
    serve_in_background(server)
    home = tmp_path / "home"
    env = run_env(home)
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        # The first pull also creates the data folder and its database: time a second one, or
        # most random kill points fall after a warm pull has already finished.
        for _ in range(2):
            duration = timed([MYNA, "adapters", "pull", "alpha", "--hub", url], env)
            assert run_watched([MYNA, "adapters", "remove", "alpha"], env=env, text=True).returncode == 0

        def after(attempt):
            conn = check_store(home)
            installed = [name for (name,) in conn.execute("SELECT name FROM adapters")]
            conn.close()
            if installed:  # that run finished: start the next from nothing again
                assert installed == ["alpha"]
                assert run_watched([MYNA, "adapters", "remove", "alpha"], env=env, text=True).returncode == 0

        times = kills(long_run, 20)
        killed = kill_at_random_points(
            lambda attempt: [MYNA, "adapters", "pull", "alpha", "--hub", url],
            env,
            times=times,
            window=(0.05, duration),
            seed=3,
            after_each=after,
        )
        assert killed >= times // 4, "a pull resumes where a killed one stopped, so fewer are cut"
        done = run_watched([MYNA, "adapters", "pull", "alpha", "--hub", url], env=env, text=True)
        assert done.returncode == 0, done.stderr
    finally:
        server.shutdown()
        server.server_close()
    check_store(home).close()
    assert list((home / "downloads").iterdir()) == [], "a finished pull leaves no partial download"


# --- train, personalize --------------------------------------------------------------------


def build_home(home: Path, session_home: Path, base_arch) -> Path:
    """A user with 30 approved replies, an active personal adapter and three community ones."""
    from assistant.store import open_database
    from merger.formats.lora import random_lora
    from merger.formats.publish import publish
    from tests.style_data import plant

    home.mkdir(mode=0o700, parents=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MYNA_HOME", str(home))  # publish writes into the data folder it is pointed at
        db = open_database(home / "myna.db")
        plant(db)
        mine = random_lora(base_arch, rank=2, seed=5, modules=("attn_v",))
        publish(db, mine, base_arch, stem="mine", kind="personal", card={})
        for number in range(3):
            publish(
                db,
                random_lora(base_arch, rank=4, seed=10 + number, std=1.0, modules=("attn_q", "attn_v")),
                base_arch,
                stem=f"sharer{number}",
                kind="community",
                card={"profile_vector": [1.0] + [0.0] * 383},
                activate=False,
            )
        db.conn.close()
    share_torch_cache(session_home, home)
    return home


@pytest.fixture
def trained_home(tmp_path, session_home, base_arch, torch_base):  # torch_base: the converted model, shared
    return build_home(tmp_path / "home", session_home, base_arch)


def adapter_work_survives_kills(home: Path, command: list[str], *, times: int, seed: int) -> None:
    env = run_env(home)
    before = active_adapter(home)
    duration = timed(command, env)

    def after(attempt):
        nonlocal before
        check_store(home).close()
        now = active_adapter(home)
        if now[0] == before[0]:
            assert now == before, "the active adapter's file changed under a killed run"
        before = now  # a run that finished published a complete adapter (check_store)

    # The first part of a run loads torch and the model and writes nothing: kill later.
    killed = kill_at_random_points(
        lambda attempt: command, env, times=times, window=(0.4 * duration, duration), seed=seed, after_each=after
    )
    assert killed >= times // 2
    done = run_watched(command, env=env, text=True)
    assert done.returncode == 0, done.stderr
    check_store(home).close()


def test_killed_training_keeps_the_active_adapter_and_the_next_run_finishes(trained_home, long_run):
    command = [MYNA, "train", "--epochs", "1", "--max-length", "32", "--batch-size", "8"]
    adapter_work_survives_kills(trained_home, command, times=kills(long_run, 3), seed=4)


# What every merge-only run goes through, in order (merger/nightly/personalize.py).
PHASES = (
    "reading your history",
    "choosing community adapters",
    "loading the models",
    "asking each community adapter",
    "scoring the current adapter",
    "searching merge weights",
    "checking the winner in llama.cpp",
)


def test_killed_personalization_keeps_the_active_adapter_and_the_next_run_finishes(trained_home, long_run):
    """Killed at a random phase of the run (read from the run's own progress record, so a
    slow machine only makes it slower), up to a second and a half into it."""
    from assistant.store import open_database
    from merger.nightly import runs

    home, rng = trained_home, random.Random(5)
    env = run_env(home)
    command = [MYNA, "personalize", "--budget", "3", "--merge-only", "--adapters", "3", "--min-examples", "0"]
    before = active_adapter(home)
    db = open_database(home / "myna.db")
    for _ in range(kills(long_run, 2)):
        target, extra = rng.randrange(len(PHASES)), rng.uniform(0, 1.5)
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        while proc.poll() is None:
            run = runs.latest(db)
            if run and run.status == "running" and run.phase in PHASES and PHASES.index(run.phase) >= target:
                time.sleep(extra)
                break
            time.sleep(0.05)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        check_store(home).close()
        now = active_adapter(home)
        assert now == before or now[0] != before[0], "the active adapter's file changed under a killed run"
        before = now
    db.conn.close()
    done = run_watched(command, env=env, text=True)
    assert done.returncode == 0, done.stderr
    assert "interrupted" in [r.status for r in runs.recent(open_database(home / "myna.db"))]
    check_store(home).close()


# --- a full disk -----------------------------------------------------------------------------


@contextlib.contextmanager
def small_disk(where: Path, megabytes: int):
    where.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.fail(f"the disk-full tests mount a small tmpfs, which needs root here ({mounted.stderr.strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(disk: Path, leave_kb: int) -> Path:
    """Take all but `leave_kb` of the disk's free space."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with open(filler, "wb") as out:
        out.truncate(0)
        out.write(b"\0" * max(0, free - leave_kb * 1024))
    return filler


FULL_DISK_COMMANDS = {
    "import": lambda tmp: [MYNA, "import", str(note_file(tmp, 99, paragraphs=200))],
    "ask": lambda tmp: [MYNA, "ask", "--max-tokens", "40", "Write two sentences about the sea."],
    "train": lambda tmp: [MYNA, "train", "--epochs", "1", "--max-length", "32", "--batch-size", "8"],
    "personalize": lambda tmp: [
        MYNA,
        "personalize",
        "--budget",
        "2",
        "--merge-only",
        "--adapters",
        "3",
        "--min-examples",
        "0",
    ],
    "export": lambda tmp: [MYNA, "export", "-y", "-o", "OUT"],
}


@pytest.mark.parametrize("name", sorted(FULL_DISK_COMMANDS))
def test_a_full_disk_says_so_keeps_everything_and_the_next_run_works(
    tmp_path, session_home, base_arch, torch_base, name
):
    with small_disk(tmp_path / "disk", 48) as disk:
        home = build_home(disk / "home", session_home, base_arch)
        env = run_env(home)
        before = active_adapter(home)
        counts = (
            check_store(home)
            .execute("SELECT (SELECT COUNT(*) FROM snippets), (SELECT COUNT(*) FROM messages)")
            .fetchone()
        )
        command = [part.replace("OUT", str(disk / "export")) for part in FULL_DISK_COMMANDS[name](tmp_path)]
        filler = fill(disk, leave_kb=16)
        done = run_watched(command, env=env, text=True)
        assert done.returncode == 1, (done.stdout, done.stderr)
        said = done.stderr.lower()
        assert "Traceback" not in done.stderr and ("full" in said or "no space left" in said), done.stderr
        conn = check_store(home)
        assert active_adapter(home) == before
        assert (
            conn.execute("SELECT (SELECT COUNT(*) FROM snippets), (SELECT COUNT(*) FROM messages)").fetchone() == counts
        )
        conn.close()
        filler.unlink()
        again = run_watched(command, env=env, text=True)
        assert again.returncode == 0, again.stderr
        check_store(home).close()
