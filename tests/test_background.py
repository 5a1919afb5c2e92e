"""Background work steps aside for the chat: a reply holds a marker, background work reads it
between its units of work, and lowers its own priority (issue 15)."""

import os
import subprocess
import sys

from assistant import activity, replies
from assistant.settings import Settings
from merger.training import background


def test_a_reply_holds_the_chatting_marker_only_while_it_is_written(db, fake_engine):
    fake_engine.queue("One two three four.")
    seen = []
    assert not activity.chat_active()
    replies.answer(db, fake_engine, Settings(), "Hello?", on_text=lambda piece: seen.append(activity.chat_active()))
    assert seen and all(seen)
    assert not activity.chat_active()


def test_a_failed_reply_leaves_no_marker(db, fake_engine):
    def fail(piece):
        raise RuntimeError("the terminal went away")

    fake_engine.queue("One two three.")
    try:
        replies.answer(db, fake_engine, Settings(), "Hello?", on_text=fail)
    except RuntimeError:
        pass
    assert not activity.chat_active()


def test_a_killed_chat_s_marker_does_not_count_and_is_cleared(myna_home):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    activity.begin()  # this process: alive
    (myna_home / activity.FOLDER / str(gone.pid)).touch()  # a chat killed mid-reply
    assert activity.chat_active()
    activity.end()
    assert not activity.chat_active()
    assert list((myna_home / activity.FOLDER).iterdir()) == [], "the dead process's marker is removed"


def test_background_work_uses_one_thread_while_a_chat_replies(monkeypatch):
    import torch

    from assistant.engine import default_threads

    usual = default_threads()
    torch.set_num_threads(usual)
    assert background.threads_now(4) == 4 and background.step_aside() == usual
    with activity.chatting():
        assert background.threads_now(4) == 1
        assert background.step_aside() == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv(background.NO_YIELD_ENV, "1")  # the benchmark's baseline
        assert background.threads_now(4) == 4
        monkeypatch.delenv(background.NO_YIELD_ENV)
    assert background.step_aside() == usual and torch.get_num_threads() == usual


def test_background_work_keeps_to_the_threads_its_environment_gives_it(monkeypatch):
    """A Ray task is given OMP_NUM_THREADS (the CPUs it declared). Training that went back to
    every core between its steps made two tasks on two cores spin against each other: the
    benchmark's merges ran 8 times slower on Ray than in one process."""
    import torch

    from assistant.engine import default_threads

    usual = default_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", str(usual + 1))
    try:
        assert default_threads() == usual + 1
        assert background.step_aside() == usual + 1 and torch.get_num_threads() == usual + 1
    finally:
        torch.set_num_threads(usual)


def test_background_work_lowers_its_own_priority():
    code = "import os; from merger.training import background; background.lower_priority(); print(os.nice(0))"
    start = os.nice(0)
    lowered = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert int(lowered.stdout) == max(start, background.NICENESS), lowered.stderr
    env = {**os.environ, background.NO_YIELD_ENV: "1"}
    kept = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert int(kept.stdout) == start, kept.stderr
