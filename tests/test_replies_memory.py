"""Answers drawing on memory: what goes into the prompt, what is recorded as sources."""

import dataclasses

from assistant import replies
from assistant.memory import ingest
from assistant.memory import store as memory_store
from assistant.prompt import NOTES_HEADER
from assistant.settings import Settings

SETTINGS = Settings(system_prompt="You are a test.")


def plant(db, tmp_path, *texts):
    path = tmp_path / "notes.jsonl"
    import json

    path.write_text("\n".join(json.dumps({"text": t, "date": "2024-01-0" + str(i + 1)}) for i, t in enumerate(texts)))
    ingest.import_paths(db, [path])


def test_answer_gets_and_records_its_sources(db, fake_engine, tmp_path):
    plant(db, tmp_path, "I am allergic to peanuts.", "My favourite colour is green.")
    fake_engine.queue("Avoid peanuts.")
    reply = replies.answer(db, fake_engine, SETTINGS, "What am I allergic to?")
    system, user = fake_engine.prompts[-1][0]["content"], fake_engine.prompts[-1][-1]["content"]
    assert system == "You are a test."
    assert user == NOTES_HEADER + '\n- "I am allergic to peanuts."\n\nWhat am I allergic to?'
    assert [s.text for s in reply.sources] == ["I am allergic to peanuts."], "the colour note is not relevant"
    assert [s.id for s in memory_store.used_by(db, reply.message_id)] == [s.id for s in reply.sources]


def test_memory_off_per_answer_and_globally(db, fake_engine, tmp_path):
    plant(db, tmp_path, "I am allergic to peanuts.")
    fake_engine.queue("a", "b")
    reply = replies.answer(db, fake_engine, SETTINGS, "What am I allergic to?", use_memory=False)
    assert [m["content"] for m in fake_engine.prompts[-1]] == ["You are a test.", "What am I allergic to?"]
    assert reply.sources == []
    off = dataclasses.replace(SETTINGS, memory="off")
    replies.answer(db, fake_engine, off, "What am I allergic to?")
    assert [m["content"] for m in fake_engine.prompts[-1]] == ["You are a test.", "What am I allergic to?"]


def test_the_current_conversation_is_not_its_own_source(db, fake_engine):
    fake_engine.queue("Nice name.", "Bolt.", "Bolt, I think.")
    first = replies.answer(db, fake_engine, SETTINGS, "My dog is called Bolt.")
    same = replies.answer(db, fake_engine, SETTINGS, "What is my dog called?", conversation_id=first.conversation_id)
    assert all(s.conversation_id != first.conversation_id for s in same.sources)
    other = replies.answer(db, fake_engine, SETTINGS, "What is my dog called?")
    assert any("Bolt" in s.text for s in other.sources), "a new conversation remembers the old one"


def test_memory_budget_limits_the_snippets(db, fake_engine, tmp_path):
    plant(db, tmp_path, *[f"Fact number {i} about my hobby of birdwatching in the estuary." for i in range(6)])
    fake_engine.queue("x", "y")
    roomy = replies.answer(db, fake_engine, dataclasses.replace(SETTINGS, retrieval_top_k=6), "birdwatching")
    tight = replies.answer(
        db, fake_engine, dataclasses.replace(SETTINGS, retrieval_top_k=6, memory_budget=40), "birdwatching"
    )
    assert len(roomy.sources) == 6
    assert 1 <= len(tight.sources) < 6


def test_a_long_message_pushes_memory_out_rather_than_failing(db, fake_engine, tmp_path):
    plant(db, tmp_path, "Facts about birdwatching " * 20)
    fake_engine.context_size = 160
    fake_engine.queue("ok")
    reply = replies.answer(db, fake_engine, dataclasses.replace(SETTINGS, max_tokens=16), "birdwatching " * 120)
    assert reply.sources == []
    assert fake_engine.prompts[-1][-1]["content"] == "birdwatching " * 120
