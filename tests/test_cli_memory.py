import json

import pytest
from click.testing import CliRunner

from assistant.memory import store as memory_store
from tui.cli.base import Runtime
from tui.cli.main import cli


@pytest.fixture
def runner(fake_engine, monkeypatch):
    monkeypatch.setattr(Runtime, "engine", lambda self: fake_engine)
    return CliRunner()


def invoke(runner, *args, input=None):
    result = runner.invoke(cli, list(args), input=input, catch_exceptions=False)
    return result


def test_import_then_list_search_show_edit_delete(runner, db, tmp_path):
    notes = tmp_path / "notes.jsonl"
    notes.write_text("\n".join(json.dumps({"text": t}) for t in ["I am allergic to peanuts.", "I play the cello."]))
    result = invoke(runner, "import", str(notes))
    assert result.exit_code == 0 and "Imported 2 snippets from 1 files." in result.stdout
    assert " elapsed, " in result.stderr and " left" in result.stderr  # the bar says which time is which
    assert "already imported and unchanged" in invoke(runner, "import", str(notes)).stdout

    listing = invoke(runner, "memory", "list").stdout
    assert "I play the cello." in listing and "from notes.jsonl" in listing
    found = invoke(runner, "memory", "search", "musical", "instrument", "-k", "1").stdout
    assert "cello" in found and "peanuts" not in found
    cello = next(s for s in memory_store.listing(db) if "cello" in s.text)
    assert "I play the cello." in invoke(runner, "memory", "show", str(cello.id)).stdout
    invoke(runner, "memory", "edit", str(cello.id), "I play the double bass.")
    assert memory_store.get(db, cello.id).text == "I play the double bass."
    assert invoke(runner, "memory", "delete", str(cello.id), "--yes").exit_code == 0
    assert [s.text for s in memory_store.listing(db)] == ["I am allergic to peanuts."]
    assert "1 snippets" in invoke(runner, "memory", "sources").stdout


def test_forget_asks_first(runner, db, tmp_path):
    (tmp_path / "n.txt").write_text("Something to forget.")
    invoke(runner, "import", str(tmp_path / "n.txt"))
    assert runner.invoke(cli, ["memory", "forget"], input="n\n").exit_code == 1
    assert memory_store.count(db) == 1
    assert invoke(runner, "memory", "forget", input="y\n").exit_code == 0
    assert memory_store.count(db) == 0


def test_import_errors_are_listed_and_fail_the_command(runner, db, tmp_path):
    (tmp_path / "ok.txt").write_text("Fine.")
    (tmp_path / "bad.jsonl").write_text("{nope}\n")
    result = runner.invoke(cli, ["import", str(tmp_path)])
    assert result.exit_code == 1
    assert "bad.jsonl, line 1: not valid JSON" in result.stderr
    assert "Imported 1 snippets from 1 files." in result.stdout
    assert "Traceback" not in result.output


def test_ask_shows_sources_and_can_skip_memory(runner, fake_engine, db, tmp_path):
    (tmp_path / "n.txt").write_text("My cat is called Miso.")
    invoke(runner, "import", str(tmp_path / "n.txt"))
    fake_engine.queue("Miso.", "No idea.")
    shown = invoke(runner, "ask", "--sources", "What", "is", "my", "cat", "called?").stdout
    assert shown.startswith("Miso.\n\nSources:\n  [1] note,")
    assert "n.txt: My cat is called Miso." in shown
    bare = invoke(runner, "ask", "--sources", "--no-memory", "What is my cat called?").stdout
    assert "Sources: none" in bare
