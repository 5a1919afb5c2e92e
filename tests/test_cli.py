import json
import signal
import sqlite3
import subprocess

import pytest
from click.testing import CliRunner

from assistant.store import conversations as convs
from assistant.store import open_database
from tests.conftest import MYNA, run_env
from tui.cli.base import Runtime
from tui.cli.main import cli


@pytest.fixture
def runner(fake_engine, monkeypatch):
    monkeypatch.setattr(Runtime, "engine", lambda self: fake_engine)
    return CliRunner()


def invoke(runner, *args, input=None):
    return runner.invoke(cli, list(args), input=input, catch_exceptions=False)


def test_ask_streams_and_records(runner, fake_engine, db):
    fake_engine.queue("Paris, of course.")
    result = invoke(runner, "ask", "Capital", "of", "France?")
    assert result.exit_code == 0
    assert result.stdout == "Paris, of course.\n"
    [conv] = convs.list_conversations(db)
    assert [m.text for m in convs.messages(db, conv.id)] == ["Capital of France?", "Paris, of course."]


def test_ask_says_what_it_remembered_on_standard_error_unless_quiet(runner, fake_engine, db):
    fake_engine.queue("Good ones.", "Rain tyres.", "I don't know.")
    result = invoke(runner, "ask", "I drive a blue 2014 Skoda Octavia. Which tyres for rain?")
    assert result.stdout == "Good ones.\n"
    assert result.stderr.startswith(
        "Remembered: you drive a blue 2014 Skoda Octavia (`myna memory delete 1` forgets it)"
    )
    quiet = invoke(runner, "ask", "--quiet", "My partner Jonas is a chef.")
    assert quiet.stderr == "" and quiet.stdout == "Rain tyres.\n"
    shown = invoke(runner, "memory", "show", "1")
    assert "chat user" in shown.stdout and "I drive a blue 2014 Skoda Octavia." in shown.stdout
    invoke(runner, "ask", "Update: I now drive a red Volvo, I sold the Skoda Octavia.")
    replaced = invoke(runner, "memory", "show", "1").stdout
    assert "(replaced by [3])" in replaced and "Replaced by [3]" in replaced
    assert "Replaces [1]" in invoke(runner, "memory", "show", "3").stdout


def test_ask_reads_stdin_and_continues(runner, fake_engine, db):
    fake_engine.queue("one", "two")
    invoke(runner, "ask", input="from a pipe\n")
    invoke(runner, "ask", "-c", "follow up")
    [conv] = convs.list_conversations(db)
    assert [m.text for m in convs.messages(db, conv.id)] == ["from a pipe\n", "one", "follow up", "two"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["ask", ""], "nothing to answer"),
        (["ask", "-c", "hi"], "no conversation to continue"),
        (["ask", "--conversation", "7", "hi"], "no conversation 7"),
        (["ask", "--temperature", "9", "hi"], "out of range"),
        (["history", "show"], "Give a conversation id"),
        (["history", "rate", "1", "good"], "no message 1"),
        (["history", "settings", "3", "--temperature", "0.5"], "no conversation 3"),
        (["config", "set", "context_size", "big"], "not a valid int"),
    ],
)
def test_bad_input_is_one_sentence(runner, args, message):
    result = runner.invoke(cli, args, input="")
    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert result.stderr.count("\n") == 1


def test_history_commands(runner, fake_engine, db, tmp_path):
    fake_engine.queue("A reply.")
    invoke(runner, "ask", "A question")
    cid = convs.latest_conversation_id(db)
    reply_id = convs.messages(db, cid)[1].id

    assert "A question" in invoke(runner, "history", "list").stdout
    invoke(runner, "history", "rename", str(cid), "Renamed", "chat")
    invoke(runner, "history", "rate", str(reply_id), "good")
    invoke(runner, "history", "correct", str(reply_id), "A better reply.")
    shown = invoke(runner, "history", "show", "--last").stdout
    assert "# 1: Renamed chat" in shown and "rated good" in shown and "A better reply." in shown

    out = tmp_path / "chat.json"
    invoke(runner, "history", "export", str(cid), "--format", "json", "-o", str(out))
    assert json.loads(out.read_text())["messages"][1]["rating"] == 1
    assert invoke(runner, "history", "export", "--last").stdout.startswith("# Renamed chat")

    assert runner.invoke(cli, ["history", "delete", str(cid)], input="n\n").exit_code == 1
    assert convs.list_conversations(db)
    invoke(runner, "history", "delete", str(cid), "--yes")
    assert convs.list_conversations(db) == []


def test_a_conversation_s_own_settings_and_search_from_the_command_line(runner, fake_engine, db):
    fake_engine.queue("Plant them in May.", "Arr, in May.", "In May.")
    invoke(runner, "ask", "When do tomatoes go out?")
    cid = convs.latest_conversation_id(db)
    saved = invoke(runner, "history", "settings", str(cid), "--system", "Talk like a pirate.", "--temperature", "0.8")
    assert "system prompt 'Talk like a pirate.' and temperature 0.8" in saved.stdout
    invoke(runner, "ask", "--conversation", str(cid), "And peppers?")
    assert fake_engine.prompts[-1][0]["content"] == "Talk like a pirate." and fake_engine.params[-1].temperature == 0.8
    assert "temperature 0.8" in invoke(runner, "history", "show", str(cid)).stdout
    invoke(runner, "ask", "--conversation", str(cid), "--temperature", "0", "Beans?")
    assert fake_engine.params[-1].temperature == 0, "an option of one answer wins over the conversation's"
    assert "the configured system prompt" in invoke(runner, "history", "settings", str(cid), "--reset").stdout
    found = invoke(runner, "history", "search", "tomato").stdout
    assert f"{cid:>5}" in found and "tomatoes" in found
    assert "No conversation" in invoke(runner, "history", "search", "zebra").stdout


def test_config_commands(runner):
    assert "temperature = 0.2  (default)" in invoke(runner, "config", "list").stdout
    invoke(runner, "config", "set", "temperature", "0.9")
    assert invoke(runner, "config", "get", "temperature").stdout == "0.9\n"
    assert "temperature = 0.9\n" in invoke(runner, "config", "list").stdout
    invoke(runner, "config", "unset", "temperature")
    assert invoke(runner, "config", "get", "temperature").stdout == "0.2\n"


def test_myna_alone_shows_what_it_can_do():
    result = CliRunner().invoke(cli, [])
    assert result.exit_code == 0 and "myna chat" in result.stdout and "Commands:" in result.stdout


def test_every_command_has_useful_help():
    from tui.cli.docs import commands

    for path, command in commands(cli):
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, path
        assert len((command.help or "").strip()) > 20, f"myna {' '.join(path)} needs a description"


def test_docs_match_the_cli():
    from tests.conftest import REPO
    from tui.cli.docs import render

    assert (REPO / "docs" / "cli.md").read_text() == render(), "run `make docs` to update docs/cli.md"


# -- the real thing, in a subprocess ----------------------------------------------------------


@pytest.mark.real
def test_cold_ask_with_the_real_model(myna_home):
    result = subprocess.run(
        [MYNA, "ask", "--temperature", "0", "--max-tokens", "30", "What is the capital of France?"],
        env=run_env(myna_home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout
    assert "llama" not in result.stderr.lower(), "llama.cpp must not print on the user's terminal"
    db = open_database()
    [conv] = convs.list_conversations(db)
    reply = convs.messages(db, conv.id)[1]
    assert reply.text.strip() == result.stdout.strip()
    assert reply.model == "smollm2-135m-instruct-q4_1"
    assert reply.completion_tokens > 0 and reply.prompt_tokens > 10


@pytest.mark.real
def test_ctrl_c_mid_reply_keeps_the_partial_reply(myna_home):
    proc = subprocess.Popen(
        [MYNA, "ask", "--max-tokens", "2000", "--temperature", "0.8", "Write a very long story about a dragon."],
        env=run_env(myna_home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    printed = ""
    while len(printed) < 40:
        printed += proc.stdout.read(1)
    proc.send_signal(signal.SIGINT)
    # Keep reading through the same buffered stream: communicate() would read the raw pipe
    # and miss what read(1) already buffered.
    printed += proc.stdout.read()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 130
    assert "the partial reply is kept as message 2" in err
    reply = convs.get_message(open_database(), 2)
    assert reply.status == "interrupted"
    assert len(reply.text) >= 40
    assert printed.strip() == reply.text.strip(), "what was shown is exactly what was kept"


@pytest.mark.real
def test_locked_database_is_reported(myna_home, db):
    holder = sqlite3.connect(myna_home / "myna.db")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = subprocess.run([MYNA, "ask", "hi"], env=run_env(myna_home), capture_output=True, text=True, timeout=60)
    finally:
        holder.rollback()
        holder.close()
    assert result.returncode == 1
    assert "is locked by another program" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.real
def test_missing_model_is_reported(myna_home, tmp_path):
    result = subprocess.run(
        [MYNA, "--model", str(tmp_path / "nope.gguf"), "ask", "hi"],
        env=run_env(myna_home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert (
        result.stderr
        == f"Error: The model file {tmp_path / 'nope.gguf'} does not exist; pass another with --model PATH.\n"
    )
    assert convs.list_conversations(open_database()) == [], "a failed start stores nothing"
