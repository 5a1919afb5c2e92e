import json
import sqlite3
import subprocess
import sys
from datetime import datetime

import pytest

from assistant.errors import MynaError
from assistant.memory.store import Snippet
from assistant.store import conversations as convs
from assistant.store import export, open_database
from assistant.store.migrations import MIGRATIONS, applied, migrate


def test_migrations_are_recorded_and_run_once(db):
    assert applied(db) == {m.__name__ for m in MIGRATIONS}
    assert migrate(db) == []
    assert {"conversations", "messages", "feedback", "settings"} <= set(db.table_names())


def test_task_adapters_arrive_without_losing_which_adapter_is_active(tmp_path, monkeypatch, base_arch):
    """m007 copies the adapters table to allow a 'task' kind; the activations that pointed at
    the old table still point at the same adapters."""
    from assistant import adapters
    from assistant.store import migrations
    from merger.formats.lora import random_lora
    from merger.formats.publish import publish

    monkeypatch.setattr(migrations, "MIGRATIONS", [m for m in MIGRATIONS if m.__name__ != "m007_task_adapters"])
    old = open_database(tmp_path / "old.db")
    lora = random_lora(base_arch, rank=2, seed=1, modules=("attn_q",))
    publish(old, lora, base_arch, stem="mine", kind="personal", card={}, activate=True)
    with pytest.raises(sqlite3.IntegrityError):
        publish(old, lora, base_arch, stem="shared", kind="task", card={}, activate=False)
    old.close()
    monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS)
    db = open_database(tmp_path / "old.db")
    assert "m007_task_adapters" in applied(db)
    assert adapters.active(db).name == "mine"
    assert publish(db, lora, base_arch, stem="shared", kind="task", card={}, activate=False).kind == "task"
    assert adapters.active(db).name == "mine" and migrate(db) == []


def test_runs_recorded_before_phase_times_read_back_without_them(tmp_path, monkeypatch):
    """m010 adds where a run's time went; a run recorded before it reads back with none, and
    one recorded after keeps its phases' seconds."""
    from assistant.store import migrations
    from merger.nightly import runs

    monkeypatch.setattr(migrations, "MIGRATIONS", [m for m in MIGRATIONS if m.__name__ != "m010_run_phase_seconds"])
    old = open_database(tmp_path / "old.db")
    runs.finish(old, runs.start(old, {}), "no-improvement", seconds=3.0)
    old.close()
    monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS)
    db = open_database(tmp_path / "old.db")
    assert runs.latest(db).phase_seconds == {} and runs.latest(db).where_the_time_went() == ""
    runs.finish(db, runs.start(db, {}), "no-improvement", phase_seconds={"searching": 61.2, "checking": 9.0})
    assert runs.latest(db).where_the_time_went() == "searching 61 s, checking 9 s"


def test_a_phase_clock_adds_up_each_phase_entered():
    from merger.nightly.runs import PhaseClock

    moments = iter([0.0, 10.0, 12.0, 15.0, 40.0])  # created, a, b, a again, totals
    clock = PhaseClock(clock=lambda: next(moments))
    for phase in ("a", "b", "a"):
        clock.enter(phase)
    assert clock.totals() == {"a": 27.0, "b": 3.0}


def test_database_is_in_wal_mode(db):
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_conversation_life_cycle(db):
    cid = convs.create_conversation(db)
    convs.add_message(db, cid, "user", "  What is   a llama?\nSecond line")
    reply = convs.add_message(db, cid, "assistant", "An animal.", model="m")
    conv = convs.get_conversation(db, cid)
    assert conv.title == "What is a llama? Second line"
    assert conv.message_count == 2
    assert [m.role for m in convs.messages(db, cid)] == ["user", "assistant"]
    assert convs.get_message(db, reply).model == "m"

    convs.rename_conversation(db, cid, "Llamas")
    assert convs.get_conversation(db, cid).title == "Llamas"
    with pytest.raises(MynaError, match="cannot be empty"):
        convs.rename_conversation(db, cid, "   ")


def test_conversations_listed_most_recent_first(db):
    first = convs.create_conversation(db)
    second = convs.create_conversation(db)
    convs.add_message(db, first, "user", "later message")
    assert [c.id for c in convs.list_conversations(db)] == [first, second]
    assert convs.latest_conversation_id(db) == first


def test_delete_removes_messages_and_feedback(db):
    cid = convs.create_conversation(db)
    convs.add_message(db, cid, "user", "hi")
    reply = convs.add_message(db, cid, "assistant", "hello")
    convs.set_feedback(db, reply, rating=1)
    convs.delete_conversation(db, cid)
    assert db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 0
    with pytest.raises(MynaError, match="no conversation"):
        convs.get_conversation(db, cid)


def test_feedback_rating_and_correction_merge(db):
    cid = convs.create_conversation(db)
    user = convs.add_message(db, cid, "user", "hi")
    reply = convs.add_message(db, cid, "assistant", "hello")
    convs.set_feedback(db, reply, rating=-1)
    convs.set_feedback(db, reply, correction="Hi there!")
    message = convs.get_message(db, reply)
    assert (message.rating, message.correction) == (-1, "Hi there!")
    with pytest.raises(MynaError, match="only replies"):
        convs.set_feedback(db, user, rating=1)
    with pytest.raises(MynaError, match="-1"):
        convs.set_feedback(db, reply, rating=5)


def test_export_markdown_and_json(db):
    cid = convs.create_conversation(db)
    convs.add_message(db, cid, "user", "Question?")
    reply = convs.add_message(db, cid, "assistant", "Answer.")
    convs.update_message(db, reply, text="Answ", status="interrupted")
    convs.set_feedback(db, reply, correction="Better answer.")
    conv, messages = convs.get_conversation(db, cid), convs.messages(db, cid)

    note = Snippet(7, "Tomatoes like  sun\nand water.", "note", None, "garden.md")
    markdown = export.to_markdown(conv, messages, {reply: [note]})
    assert markdown.startswith("# Question?\n")
    assert "## Assistant (interrupted)\n\nAnsw\n" in markdown
    assert "> Better answer." in markdown
    assert "Sources:\n- [7] garden.md: Tomatoes like sun and water.\n" in markdown
    # The start in local time to the minute, not the stored UTC stamp with microseconds.
    started = datetime.fromisoformat(conv.created_at).astimezone().strftime("%Y-%m-%d %H:%M")
    assert f"started {started}." in markdown and conv.created_at not in markdown

    data = json.loads(export.to_json(conv, messages, {reply: [note]}))
    assert data["id"] == cid
    assert [m["text"] for m in data["messages"]] == ["Question?", "Answ"]
    assert data["messages"][1]["correction"] == "Better answer."
    assert data["messages"][1]["sources"][0]["origin"] == "garden.md" and data["messages"][0]["sources"] == []


def test_reply_of_a_dead_process_becomes_interrupted(db):
    cid = convs.create_conversation(db)
    mid = convs.add_message(db, cid, "assistant", "", status="streaming")
    convs.update_message(db, mid, text="partial", status="streaming")
    # A process that has exited: its pid is free.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    db.execute("UPDATE messages SET writer_pid = ? WHERE id = ?", (dead.pid, mid))
    db.conn.commit()
    live = convs.add_message(db, cid, "assistant", "", status="streaming")  # this process: alive

    assert convs.recover_abandoned_replies(db) == 1
    assert convs.get_message(db, mid).status == "interrupted"
    assert convs.get_message(db, mid).text == "partial"
    assert convs.get_message(db, live).status == "streaming"


def test_full_disk_keeps_previous_state(db):
    cid = convs.create_conversation(db)
    convs.add_message(db, cid, "user", "kept")
    # Cap the file at its current size: SQLite then fails exactly as on a full disk.
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(sqlite3.OperationalError, match="full") as info:
        convs.add_message(db, cid, "user", "x" * 200_000)
    from assistant.store import describe_sqlite_error

    message = str(describe_sqlite_error(info.value))
    assert "full" in message and "intact" in message
    assert [m.text for m in convs.messages(db, cid)] == ["kept"]


def test_damaged_database_file_is_named_and_left_alone(myna_home):
    myna_home.mkdir(parents=True, exist_ok=True)
    damaged = myna_home / "myna.db"
    damaged.write_bytes(b"this is not sqlite" * 100)
    before = damaged.read_bytes()
    with pytest.raises(MynaError, match="not a readable Myna database"):
        open_database()
    assert damaged.read_bytes() == before


def test_unopenable_database_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(MynaError, match="Cannot write"):
        open_database(blocker / "myna.db")


def test_locked_database_gives_a_clear_message(db, myna_home):
    holder = open_database()
    holder.conn.execute("BEGIN EXCLUSIVE")
    try:
        other = open_database(timeout=0.2)
        with pytest.raises(sqlite3.OperationalError) as info:
            convs.create_conversation(other)
        from assistant.store import describe_sqlite_error

        assert "locked by another program" in str(describe_sqlite_error(info.value))
    finally:
        holder.conn.rollback()
    assert convs.create_conversation(db) > 0


def test_conversations_are_found_by_title_and_by_the_words_of_their_messages(db):
    garden = convs.create_conversation(db, "Garden plans")
    convs.add_message(db, garden, "user", "When should I plant the tomatoes?")
    trip = convs.create_conversation(db)
    convs.add_message(db, trip, "user", "Book a train to Lyon")
    reply = convs.add_message(db, trip, "assistant", "", status="streaming")
    convs.update_message(
        db, reply, text="The 9:04 train reaches Lyon at noon; tomato salad on board.", status="complete"
    )

    def ids(query):
        return [found.conversation.id for found in convs.search_conversations(db, query)]

    assert ids("tomato") == [garden, trip]  # "tomatoes" is found by its stem, the streamed reply too
    assert ids("toma") == [garden, trip], "a word is matched as typed so far"
    assert ids("garden") == [garden], "by its title"
    assert ids("lyon noon") == [trip], "every word"
    assert ids("tomato lyon") == [trip]
    assert ids("the") == [] and ids("") == [] and ids("zebra") == []
    [found] = convs.search_conversations(db, "noon")
    assert "noon" in found.excerpt
    convs.delete_messages(db, [reply])
    assert ids("noon") == [], "a deleted message is no longer found"


def test_a_run_is_the_same_as_the_last_only_if_the_last_finished_search_ended_there(tmp_path):
    """m011: each finished search records where it ended; a later run from the same inputs
    finds it, runs that searched nothing (failed, skipped) do not hide it, and a newer search
    ending elsewhere does."""
    from merger.nightly import runs

    db = open_database(tmp_path / "runs.db")
    here, there = runs.inputs("history", "adapters"), runs.inputs("history", "adapters", "one more rating")
    assert here != there and here == runs.inputs("history", "adapters") != runs.inputs("historyadapters")
    assert runs.same_as_last(db, here) is None, "no run yet"
    kept = runs.start(db, {})
    runs.finish(db, kept, "no-improvement", inputs=here)
    runs.finish(db, runs.start(db, {}), "failed", message="disk full")
    runs.finish(db, runs.start(db, {}), "skipped", message="nothing changed")
    assert runs.same_as_last(db, here).id == kept and runs.same_as_last(db, there) is None
    runs.finish(db, runs.start(db, {}), "published", inputs=there)
    assert runs.same_as_last(db, here) is None and runs.same_as_last(db, there).status == "published"
