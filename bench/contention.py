"""The chat beside background work: decode speed of a reply alone, beside a running
`myna personalize` as it ran before (full priority, all threads: MYNA_NO_YIELD=1), and beside
one that yields (niceness 10, one thread while a reply is written); and the nightly run's
own pace (candidates a minute) with and without a chat replying. Part of `python -m bench
speed`.

The run is the benchmark's nightly setup (bench/personalize.py: 8 community adapters from a
news hub, a 9th account's tweets as the history, 50 held out; a budget it never reaches), watched during its
merge search; the chat is llama.cpp in this process with the app's thread count, holding
the chatting marker as a reply does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import BIN, median

TOKENS = 64
WINDOW_S = 60.0  # how long each pace is watched
SETTLE_S = 5.0


def _decode_rate(engine, prompt: list[int]) -> float:
    from assistant import activity

    engine.llm.reset()
    stamps = []
    with activity.chatting():
        for _token in engine.llm.generate(prompt, temp=0.0):
            stamps.append(time.perf_counter())
            if len(stamps) >= TOKENS:
                break
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def _trials(db_path: Path, pid: int) -> int:
    """Candidates the run of process `pid` has judged so far (its progress record); -1
    outside its merge search."""
    from assistant.store import open_database
    from merger.nightly import runs

    db = open_database(db_path)
    try:
        run = runs.latest(db)
        return run.done if run and run.pid == pid and run.phase == "searching merge weights" else -1
    finally:
        db.conn.close()


def _wait_for_search(db_path: Path, process: subprocess.Popen, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while _trials(db_path, process.pid) < 1:
        if process.poll() is not None:
            raise RuntimeError(f"myna personalize ended ({process.returncode}) before its merge search")
        if time.monotonic() > deadline:
            raise RuntimeError("myna personalize did not reach its merge search")
        time.sleep(1)


PAUSE_S = 15.0  # a person reading a reply before the next question


def _paced_chat(engine, prompt, db_path: Path, pid: int) -> float:
    """The run's pace (candidates a minute) while a person chats: a reply, then a pause."""
    start, before = time.monotonic(), _trials(db_path, pid)
    while time.monotonic() - start < WINDOW_S:
        _decode_rate(engine, prompt)
        time.sleep(PAUSE_S)
    return (_trials(db_path, pid) - before) / ((time.monotonic() - start) / 60)


def _beside(engine, prompt, user: dict, db_path: Path, yielding: bool) -> dict:
    from merger.training import background

    threads = engine.threads
    env = dict(user) if yielding else {**user, background.NO_YIELD_ENV: "1"}
    process = subprocess.Popen(
        [str(BIN / "myna"), "personalize", "--budget", "400", "--adapters", "8"],  # stopped long before the end
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_search(db_path, process)
        time.sleep(SETTLE_S)
        start, before = time.monotonic(), _trials(db_path, process.pid)
        time.sleep(WINDOW_S)  # the run alone
        alone_pace = (_trials(db_path, process.pid) - before) / ((time.monotonic() - start) / 60)
        rates, start, before = [], time.monotonic(), _trials(db_path, process.pid)
        one_thread: list[float] = []
        while time.monotonic() - start < WINDOW_S or len(rates) < 3:  # replies back to back
            rates.append(_decode_rate(engine, prompt))
            if yielding:  # the same reply on one thread, interleaved: which count serves best here
                engine.set_threads(1)
                one_thread.append(_decode_rate(engine, prompt))
                engine.set_threads(threads)
        chat_pace = (_trials(db_path, process.pid) - before) / ((time.monotonic() - start) / 60)
        paced = _paced_chat(engine, prompt, db_path, process.pid) if yielding else None
        if _trials(db_path, process.pid) < 0:
            raise RuntimeError("the run left its merge search while it was watched; raise the budget")
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C: it stops and keeps the active adapter
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
    found = {"decode_tok_s": median(rates), "replies": len(rates), "pace_alone": alone_pace, "pace_chat": chat_pace}
    if yielding:
        found.update(decode_tok_s_one_thread=median(one_thread), pace_paced_chat=paced)
    print(f"beside myna personalize ({'yielding' if yielding else 'not yielding'}): {found}", flush=True)
    return found


def run(runs: int, chat: list[dict]) -> dict:
    """`chat`: the messages each reply answers."""
    from bench import personalize

    hub = personalize.ensure_hub(dict(os.environ), 8)
    # The user's folder (over half a GB) goes however the run ends, its setup failing included.
    with tempfile.TemporaryDirectory(prefix="myna-bench-contention-", ignore_cleanup_errors=True) as work:
        return _measured(runs, chat, personalize.user_home(hub, 8, 50, personalize.USER, Path(work)))


def _measured(runs: int, chat: list[dict], user: dict) -> dict:
    from assistant.catalogue import resolve
    from assistant.engine import Engine, default_threads
    from assistant.settings import Settings

    previous = os.environ.get("MYNA_HOME")
    os.environ["MYNA_HOME"] = user["MYNA_HOME"]  # the run must see this chat's marker
    try:
        engine = Engine(resolve(Settings().model), context_size=4096, threads=default_threads())
        prompt = engine.tokenize_chat(chat)
        db_path = Path(user["MYNA_HOME"]) / "myna.db"
        alone = [_decode_rate(engine, prompt) for _ in range(runs)]
        before = _beside(engine, prompt, user, db_path, yielding=False)
        now = _beside(engine, prompt, user, db_path, yielding=True)
    finally:
        if previous is None:
            os.environ.pop("MYNA_HOME", None)
        else:
            os.environ["MYNA_HOME"] = previous
    return {
        "contention_decode_alone_tok_s": median(alone),
        "contention_no_yield": before,
        "contention_yield": now,
        "contention_threads": default_threads(),
    }


def rows(f: dict) -> list[tuple[str, str, str]]:
    alone, before, now = f["contention_decode_alone_tok_s"], f["contention_no_yield"], f["contention_yield"]
    return [
        ("chat decode, alone", f"{alone:.1f} tok/s", f"{TOKENS} tokens, {f['contention_threads']} threads"),
        (
            "chat decode beside `myna personalize`, not yielding (before)",
            f"{before['decode_tok_s']:.1f} tok/s",
            f"{before['decode_tok_s'] / alone:.0%} of alone",
        ),
        (
            "chat decode beside `myna personalize`, yielding (shipped)",
            f"{now['decode_tok_s']:.1f} tok/s",
            f"{now['decode_tok_s'] / alone:.0%} of alone (goal ≥ 50 %)",
        ),
        (
            "the same, the chat on 1 thread instead (interleaved)",
            f"{now['decode_tok_s_one_thread']:.1f} tok/s",
            f"{now['decode_tok_s_one_thread'] / alone:.0%} of alone",
        ),
        (
            "nightly run's pace while a chat replies, yielding",
            f"{now['pace_chat']:.1f} candidates/min",
            f"{now['pace_alone']:.1f} without a chat ({now['pace_chat'] / max(now['pace_alone'], 1e-9):.0%}); "
            f"not yielding {before['pace_chat']:.1f} and {before['pace_alone']:.1f}",
        ),
        (
            f"nightly run's pace while a person chats (a reply, then {PAUSE_S:.0f} s reading), yielding",
            f"{now['pace_paced_chat']:.1f} candidates/min",
            f"{now['pace_paced_chat'] / max(now['pace_alone'], 1e-9):.0%} of its pace without a chat",
        ),
    ]
