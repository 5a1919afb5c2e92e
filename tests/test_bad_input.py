"""The reproductions of the hostile-user review (issue 17): each got a traceback, a wrong
answer or a lost promise before, and gets one clear sentence (or the right result) now."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from assistant import input_text
from assistant.errors import MynaError
from assistant.store import conversations as convs
from assistant.store import open_database
from tests.conftest import MYNA, run_env
from tui.cli.base import Runtime
from tui.cli.main import cli


@pytest.fixture
def runner(fake_engine, monkeypatch):
    monkeypatch.setattr(Runtime, "engine", lambda self: fake_engine)
    return CliRunner()


def myna(home: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([MYNA, *args], env=run_env(home), input=stdin, capture_output=True, timeout=300)


# --- invalid UTF-8 ------------------------------------------------------------------------


@pytest.mark.real
@pytest.mark.parametrize(
    "how",
    ["random bytes on stdin", "mixed bytes on stdin", "bytes in the argument"],
)
def test_invalid_utf8_reaches_the_model_replaced_and_the_user_is_told(myna_home, how):
    if how == "random bytes on stdin":
        args, stdin = ["ask", "--max-tokens", "5"], random.Random(7).randbytes(1500)
    elif how == "mixed bytes on stdin":
        args, stdin = ["ask", "--max-tokens", "5"], b"\xff\xfe\xfa hello \xc3\x28"
    else:
        args, stdin = [b"ask", b"--max-tokens", b"5", b"hello \xff\xfe world"], None
    done = subprocess.run([MYNA, *args], env=run_env(myna_home), input=stdin, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"Traceback" not in done.stderr
    assert b"could not be read as text and were replaced with" in done.stderr
    [conversation] = convs.list_conversations(open_database())
    stored = convs.messages(open_database(), conversation.id)[0].text
    assert input_text.REPLACEMENT in stored and stored.encode("utf-8")


@pytest.mark.real
def test_invalid_utf8_in_a_memory_search_is_searched_for_what_it_says(myna_home, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("The basil moved to the kitchen window.\n")
    assert myna(myna_home, "import", str(notes)).returncode == 0
    done = subprocess.run(
        [MYNA, "memory", "search", b"basil \xff\xfe window"], env=run_env(myna_home), capture_output=True, timeout=300
    )
    assert done.returncode == 0 and b"Traceback" not in done.stderr
    assert b"basil moved" in done.stdout


def test_the_input_policy_on_its_own():
    smuggled = b"caf\xc3\xa9 \xff\x00ok".decode("utf-8", "surrogateescape")
    cleaned = input_text.clean(smuggled)
    assert cleaned.text == "café \ufffdok" and cleaned.replaced == 2
    assert input_text.clean("lone \ud800 surrogate").text == "lone \ufffd surrogate"
    assert input_text.clean("plain, already fine \ufffd").replaced == 0
    assert input_text.decode(b"\xef\xbf\xbd kept \xff").replaced == 1
    assert "1 character of your message" in input_text.clean("a\x00b").notice("your message")


# --- files, settings and models -----------------------------------------------------------


@pytest.mark.real
def test_models_check_finds_a_truncated_gguf(myna_home, tmp_path, real_engine):
    source = real_engine.spec.path
    for size in (1000, 50_000_000):
        cut = tmp_path / f"cut-{size}.gguf"
        with open(source, "rb") as src, open(cut, "wb") as out:
            out.write(src.read(size))
        done = myna(myna_home, "models", "check", str(cut))
        assert done.returncode == 1 and b"Traceback" not in done.stderr
        assert b"is not a usable GGUF model" in done.stderr
    copy = tmp_path / "whole.gguf"
    shutil.copyfile(source, copy)
    assert myna(myna_home, "models", "check", str(copy)).returncode == 0


def test_a_folder_given_as_the_model_says_it_is_a_folder(runner, tmp_path):
    result = runner.invoke(cli, ["models", "check", str(tmp_path)])
    assert result.exit_code == 1 and "is a folder, not a model file" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["config", "set", "temperature", "-1"], "out of range"),
        (["config", "set", "model", "/nonexistent.gguf"], "does not exist"),
        (["config", "set", "model", "pyproject.toml"], "not a GGUF model file"),
        (["config", "set", "hub", "ftp://x"], "http(s) address or a folder"),
        (["config", "set", "hub", "/"], "no index.json"),
        (["config", "set", "memroy", "on"], "did you mean 'memory'"),
        (["config", "set", "temperature", "nan"], "out of range"),
        (["train", "--name", "../../escape"], "cannot be an adapter's name"),
    ],
)
def test_bad_values_are_refused_when_given(runner, db, args, message):
    result = runner.invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert result.stderr.count("\n") == 1
    assert db.execute("SELECT COUNT(*) FROM settings").fetchone()[0] == 0


def test_usual_booleans_switch_memory(runner, db):
    for value, stored in (("false", "off"), ("yes", "on"), ("0", "off"), ("ON", "on")):
        result = runner.invoke(cli, ["config", "set", "memory", value])
        assert result.exit_code == 0 and f"memory = '{stored}'" in result.stdout


def test_a_lamp_item_that_is_not_text_is_refused(tmp_path):
    from assistant.memory import readers

    questions = tmp_path / "questions.json"
    questions.write_text(json.dumps([{"id": "1", "input": "x", "profile": [{"id": "p1", "text": 5}]}]))
    with pytest.raises(MynaError, match="record 1 \\(id 1\\): a profile item has none of the LaMP fields as text"):
        readers.read(questions)
    questions.write_text(json.dumps([{"id": "1", "input": "x", "profile": [{"id": {"a": 1}, "text": "ok"}]}]))
    assert [r.text for r in readers.read(questions).records] == ["ok"]


def test_a_twenty_megabyte_line_is_cut_into_snippets():
    from assistant.memory import chunking

    for line in ("x" * 20_000_000, "word " * 4_000_000):
        pieces = chunking.split(line)
        assert max(map(len, pieces)) <= chunking.MAX_CHARS
        assert sum(len(p.replace(" ", "")) for p in pieces) == len(line.replace(" ", ""))


def test_short_notes_say_why_they_do_not_train(db):
    from merger.data import examples

    stamp = convs.now()
    source = db.execute(
        "INSERT INTO sources (kind, location, title, content_hash, imported_at, status) VALUES "
        "('jsonl', 'notes.jsonl', 'notes', 'h', ?, 'complete')",
        (stamp,),
    ).lastrowid
    for i in range(60):
        db.execute(
            "INSERT INTO snippets (source_id, position, record, kind, text, content_hash, created_at) "
            "VALUES (?, ?, ?, 'note', ?, ?, ?)",
            (source, i, i, f"a short note number {i}", f"h{i}", stamp),
        )
    found = examples.from_store(db)
    with pytest.raises(MynaError, match="60 imported records were too short to learn from"):
        examples.require_enough(found)


# --- the database -------------------------------------------------------------------------


def test_a_database_with_a_damaged_middle_page_is_refused(myna_home):
    db = open_database()
    with db.conn:
        for i in range(400):
            db.execute("INSERT INTO settings (key, value) VALUES (?, ?)", (f"k{i}", json.dumps("v" * 200)))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.conn.close()
    path = myna_home / "myna.db"
    pages = path.stat().st_size // 4096
    with open(path, "r+b") as handle:
        handle.seek((pages // 2) * 4096)  # a page in use: no row was ever deleted, nothing is free
        handle.write(random.Random(1).randbytes(4096))
    with pytest.raises(MynaError, match="is damaged .*Myna will not use it as it is"):
        open_database()


def test_a_full_disk_during_ask_leaves_no_empty_conversation_and_no_grown_log(myna_home, fake_engine):
    """SQLite's page limit gives a real SQLITE_FULL on this connection."""
    from assistant import replies
    from assistant.settings import Settings

    db = open_database()
    fake_engine.context_size = 16384  # room for a message that needs new pages
    fake_engine.queue("ok")
    replies.begin(db, fake_engine, Settings(memory="off"), "a first question that fits")
    before = db.execute("SELECT COUNT(*) FROM conversations").fetchone()[0]
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(sqlite3.OperationalError, match="full"):
        replies.begin(db, fake_engine, Settings(memory="off"), "long words " * 2000)
    assert db.execute("SELECT COUNT(*) FROM conversations").fetchone()[0] == before
    wal = myna_home / "myna.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0, "the failed write's log space is given back"


def test_the_disk_full_message_is_one_sentence(runner, db, monkeypatch):
    from assistant import replies

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(replies.convs, "add_message", full)
    result = runner.invoke(cli, ["ask", "hello"])
    assert result.exit_code == 1 and "is full, so nothing was saved" in result.stderr
    assert convs.list_conversations(db) == []


def test_the_data_folder_in_a_file_is_one_sentence(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = subprocess.run(
        [MYNA, "config", "path"], env=run_env(blocker / "home"), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and "Cannot create Myna's data folder" in done.stderr


def test_a_short_write_from_numpy_is_the_disk_full_message(runner, db, monkeypatch):
    """NumPy's tofile (the gguf writer's) reports a full disk with no errno; /dev/full makes
    it do so for real."""
    import numpy as np

    from assistant import replies

    def full(*args, **kwargs):
        with open("/dev/full", "wb") as out:
            np.zeros(4096, dtype=np.float32).tofile(out)

    monkeypatch.setattr(replies.convs, "add_message", full)
    result = runner.invoke(cli, ["ask", "hello"])
    assert result.exit_code == 1 and "The disk is full" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
