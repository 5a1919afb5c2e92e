import threading

import pytest

from assistant import replies
from assistant.errors import MynaError
from assistant.settings import Settings
from assistant.store import conversations as convs

SETTINGS = Settings(system_prompt="You are a test.")


def test_answer_records_both_messages_and_streams(db, fake_engine):
    fake_engine.queue("Paris is the capital.")
    pieces = []
    reply = replies.answer(db, fake_engine, SETTINGS, "Capital of France?", on_text=pieces.append)
    assert "".join(pieces) == reply.text == "Paris is the capital."
    assert len(pieces) == 4
    stored = convs.messages(db, reply.conversation_id)
    assert [(m.role, m.text, m.status) for m in stored] == [
        ("user", "Capital of France?", "complete"),
        ("assistant", "Paris is the capital.", "complete"),
    ]
    assert stored[1].model == "fake-model"
    assert stored[1].prompt_tokens == reply.prompt_tokens > 0
    assert stored[1].completion_tokens == 4


def test_history_is_sent_with_corrections_winning(db, fake_engine):
    fake_engine.queue("first answer", "second answer")
    first = replies.answer(db, fake_engine, SETTINGS, "one")
    convs.set_feedback(db, first.message_id, correction="the corrected answer")
    replies.answer(db, fake_engine, SETTINGS, "two", conversation_id=first.conversation_id)
    sent = fake_engine.prompts[-1]
    assert [m["content"] for m in sent] == ["You are a test.", "one", "the corrected answer", "two"]


def test_cancel_keeps_the_partial_reply_as_interrupted(db, fake_engine):
    fake_engine.queue("one two three four five six")
    stop = threading.Event()
    seen = []

    def on_text(piece):
        seen.append(piece)
        if len(seen) == 2:
            stop.set()

    reply = replies.answer(db, fake_engine, SETTINGS, "count", on_text=on_text, should_stop=stop.is_set)
    assert reply.status == "interrupted"
    assert convs.get_message(db, reply.message_id).text == "one two"
    assert convs.get_message(db, reply.message_id).status == "interrupted"


def test_ctrl_c_keeps_the_partial_reply(db, fake_engine):
    fake_engine.queue("alpha beta gamma delta")
    fake_engine.fail_after, fake_engine.failure = 2, KeyboardInterrupt()
    pending = replies.begin(db, fake_engine, SETTINGS, "go")
    with pytest.raises(KeyboardInterrupt):
        replies.stream(db, fake_engine, SETTINGS, pending)
    message = convs.get_message(db, pending.message_id)
    assert (message.text, message.status) == ("alpha beta", "interrupted")


def test_refused_message_stores_nothing(db, fake_engine):
    with pytest.raises(MynaError, match="nothing to answer"):
        replies.answer(db, fake_engine, SETTINGS, "   ")
    with pytest.raises(MynaError, match="shorten it"):
        replies.answer(db, fake_engine, SETTINGS, "word " * 2000)
    assert convs.list_conversations(db) == []


def test_long_conversations_drop_the_oldest_turns(db, fake_engine):
    fake_engine.context_size = 200
    settings = Settings(system_prompt="s", max_tokens=50)
    cid = None
    for i in range(12):
        fake_engine.queue(" ".join([f"answer{i}"] * 10))
        reply = replies.answer(db, fake_engine, settings, " ".join([f"question{i}"] * 10), conversation_id=cid)
        cid = reply.conversation_id
    assert reply.dropped_turns > 0
    assert reply.prompt_tokens <= 150
    assert fake_engine.prompts[-1][-1]["content"].startswith("question11")
    assert len(convs.messages(db, cid)) == 24, "trimming the prompt never deletes history"


def test_a_conversation_s_own_system_prompt_and_temperature_write_its_replies(db, fake_engine):
    fake_engine.queue("first", "second", "third")
    first = replies.answer(db, fake_engine, SETTINGS, "one")
    conversation = convs.set_conversation_settings(
        db, first.conversation_id, system_prompt="Answer like a pirate.", temperature=0.9
    )
    assert (conversation.system_prompt, conversation.temperature) == ("Answer like a pirate.", 0.9)
    own = replies.settings_for(db, SETTINGS, first.conversation_id)
    assert (own.system_prompt, own.temperature, own.max_tokens) == ("Answer like a pirate.", 0.9, SETTINGS.max_tokens)
    replies.answer(db, fake_engine, own, "two", conversation_id=first.conversation_id)
    assert fake_engine.prompts[-1][0]["content"] == "Answer like a pirate."
    assert fake_engine.params[-1].temperature == 0.9
    other = replies.answer(db, fake_engine, replies.settings_for(db, SETTINGS, None), "three")
    assert fake_engine.prompts[-1][0]["content"] == "You are a test.", "other conversations keep the configured one"
    assert convs.get_conversation(db, other.conversation_id).system_prompt is None
    back = convs.set_conversation_settings(db, first.conversation_id, system_prompt=None, temperature=None)
    assert (back.system_prompt, back.temperature) == (None, None)


@pytest.mark.parametrize("temperature", [7.0, -1.0])
def test_a_conversation_s_temperature_is_checked(db, fake_engine, temperature):
    fake_engine.queue("first")
    first = replies.answer(db, fake_engine, SETTINGS, "one")
    with pytest.raises(MynaError, match="out of range"):
        convs.set_conversation_settings(db, first.conversation_id, system_prompt=None, temperature=temperature)
    assert convs.get_conversation(db, first.conversation_id).temperature is None


def test_answering_again_replaces_the_last_reply(db, fake_engine):
    fake_engine.queue("first answer", "a bad answer", "a better answer")
    first = replies.answer(db, fake_engine, SETTINGS, "one")
    second = replies.answer(db, fake_engine, SETTINGS, "two", conversation_id=first.conversation_id)
    convs.set_feedback(db, second.message_id, rating=-1)
    pending = replies.begin_again(db, fake_engine, SETTINGS, first.conversation_id)
    again = replies.stream(db, fake_engine, SETTINGS, pending)
    assert again.text == "a better answer"
    assert [m["content"] for m in fake_engine.prompts[-1]] == ["You are a test.", "one", "first answer", "two"]
    stored = convs.messages(db, first.conversation_id)
    assert [(m.role, m.text, m.rating) for m in stored] == [
        ("user", "one", None),
        ("assistant", "first answer", None),
        ("user", "two", None),
        ("assistant", "a better answer", None),
    ], "the old reply is gone with its rating"


def test_answering_again_keeps_a_corrected_reply_and_needs_a_question(db, fake_engine):
    fake_engine.queue("an answer")
    first = replies.answer(db, fake_engine, SETTINGS, "one")
    convs.set_feedback(db, first.message_id, correction="the right answer")
    with pytest.raises(MynaError, match="correction"):
        replies.begin_again(db, fake_engine, SETTINGS, first.conversation_id)
    assert convs.get_message(db, first.message_id).correction == "the right answer"
    empty = convs.create_conversation(db)
    with pytest.raises(MynaError, match="nothing to answer again"):
        replies.begin_again(db, fake_engine, SETTINGS, empty)
