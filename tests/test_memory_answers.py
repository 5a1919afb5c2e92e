"""Memory that answers: what is remembered, what an answer is given, and how it is laid out.

Real database, real embeddings (the packaged MiniLM); the engine is the fake one except where
marked `real`.
"""

import dataclasses
import json

import pytest

from assistant import feedback, replies
from assistant import prompt as prompts
from assistant.memory import facts, ingest, recall, told
from assistant.memory import store as memory_store
from assistant.settings import Settings
from assistant.store import conversations as convs
from assistant.store.transaction import transaction

SETTINGS = Settings(system_prompt="You are a test.")
NOTES = [
    "Mia (my sister) is allergic to peanuts, she carries an EpiPen.",
    "Dentist appointment with Dr Hallam on Tuesday 14 November at 3:30pm.",
    "Moved the basil to the kitchen windowsill, the balcony got too cold.",
    "The neighbours' beagle is called Biscuit.",
]


def plant(db, tmp_path, texts, name="notes.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps({"text": t, "date": f"2024-01-{i + 1:02d}"}) for i, t in enumerate(texts)))
    ingest.import_paths(db, [path])


def prompt_text(chat):
    return "\n".join(message["content"] for message in chat)


def memory_texts(db):
    return {s.text for s in memory_store.listing(db, limit=1000)}


# -- what is remembered --------------------------------------------------------------------------


def test_an_unrated_reply_is_never_remembered_nor_retrieved(db, fake_engine):
    fake_engine.queue("Your sister likes purple elephants.", "ok")
    first = replies.answer(db, fake_engine, SETTINGS, "Tell me something about my sister.")
    assert "Your sister likes purple elephants." not in memory_texts(db)
    later = replies.answer(db, fake_engine, SETTINGS, "Which animals does my sister like?")
    assert all(s.message_id != first.message_id for s in later.sources)
    assert "purple elephants" not in prompt_text(fake_engine.prompts[-1])


def test_a_good_rating_remembers_a_reply_and_a_bad_one_forgets_it(db, fake_engine):
    fake_engine.queue("The recycling goes out on Wednesdays.")
    reply = replies.answer(db, fake_engine, SETTINGS, "Remind me about the bins.")
    feedback.give(db, reply.message_id, rating=1)
    assert "The recycling goes out on Wednesdays." in memory_texts(db)
    fake_engine.queue("Wednesday.")
    later = replies.answer(db, fake_engine, SETTINGS, "Which day does the recycling go out?")
    assert [s.message_id for s in later.sources] == [reply.message_id]
    feedback.give(db, reply.message_id, rating=-1)
    assert "The recycling goes out on Wednesdays." not in memory_texts(db)


def test_a_correction_is_what_is_remembered(db, fake_engine):
    fake_engine.queue("Your sister is called Maria.")
    reply = replies.answer(db, fake_engine, SETTINGS, "Who is my sister?")
    feedback.give(db, reply.message_id, correction="Your sister is called Ines.")
    texts = memory_texts(db)
    assert "Your sister is called Ines." in texts and "Your sister is called Maria." not in texts
    fake_engine.queue("Ines.")
    later = replies.answer(db, fake_engine, SETTINGS, "What is my sister's name?")
    assert [s.text for s in later.sources] == ["Your sister is called Ines."]


def test_questions_are_not_remembered_but_statements_are(db, fake_engine):
    fake_engine.queue("a", "b", "c")
    replies.answer(db, fake_engine, SETTINGS, "What is my sister allergic to?")
    replies.answer(db, fake_engine, SETTINGS, "where did I put the keys")
    replies.answer(db, fake_engine, SETTINGS, "My sister Mia is allergic to peanuts.")
    assert memory_texts(db) == {"My sister Mia is allergic to peanuts."}


def test_the_migration_cleans_an_old_store(db):
    """A store from before memory hygiene: every reply and question was a memory."""
    from assistant.store import migrations

    conversation = convs.create_conversation(db)
    rows = [
        ("user", "What is my dog called?"),
        ("assistant", "A wrong guess."),
        ("user", "My dog is called Bolt."),
        ("assistant", "Nice name, Bolt."),
        ("assistant", "Your dog is Rex."),
    ]
    ids = [convs.add_message(db, conversation, role, text) for role, text in rows]
    with db.conn:
        for message_id, (role, text) in zip(ids, rows):
            db.execute(
                "INSERT INTO snippets (message_id, kind, text, content_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                (message_id, f"chat {role}", text, str(message_id), "2024-01-01"),
            )
    convs.set_feedback(db, ids[3], rating=1)
    convs.set_feedback(db, ids[4], correction="Your dog is Bolt.")
    with db.conn:
        db.execute("DELETE FROM _migrations WHERE name = 'm005_memory_hygiene'")
    assert migrations.migrate(db) == ["m005_memory_hygiene"]
    assert memory_texts(db) == {"My dog is called Bolt.", "Nice name, Bolt.", "Your dog is Bolt."}


# -- what an answer is given ------------------------------------------------------------------------


def test_an_unrelated_question_gets_no_memory_and_no_sources(db, fake_engine, tmp_path):
    plant(db, tmp_path, NOTES)
    fake_engine.queue("Hello there, how are you?", "Biscuit.")
    reply = replies.answer(db, fake_engine, SETTINGS, "Say hello in five words.")
    assert reply.sources == [] and memory_store.used_by(db, reply.message_id) == []
    assert not any(note in prompt_text(fake_engine.prompts[-1]) for note in NOTES)
    related = replies.answer(db, fake_engine, SETTINGS, "What is the name of the neighbours' dog?")
    assert [s.text for s in related.sources] == [NOTES[3]], "the one relevant note, not its weaker neighbours"


def test_each_note_of_a_notes_file_is_found_and_given_apart(db, fake_engine, tmp_path):
    """The usual notes file: short paragraphs and a bulleted list, about unrelated things."""
    path = tmp_path / "notes.md"
    path.write_text(
        "# Things to remember\n\n" + "\n\n".join(NOTES[:3]) + "\n\nGarden:\n- tomatoes need staking\n"
        "- " + NOTES[3] + "\n"
    )
    ingest.import_paths(db, [path])
    for question, note in [
        ("When is my dentist appointment?", NOTES[1]),
        ("Where did I move the basil?", NOTES[2]),
        ("What is the name of the neighbours' dog?", NOTES[3]),
    ]:
        fake_engine.queue("An answer.")
        reply = replies.answer(db, fake_engine, SETTINGS, question)
        assert len(reply.sources) == 1 and note in reply.sources[0].text, question
        assert not any(other in prompt_text(fake_engine.prompts[-1]) for other in NOTES if other != note)


@pytest.mark.parametrize("layout", prompts.LAYOUTS)
def test_the_prompt_holds_exactly_the_sources_shown(db, fake_engine, tmp_path, layout):
    plant(db, tmp_path, NOTES + [f"Gardening note {i}: the basil and the tomatoes need water." for i in range(5)])
    settings = dataclasses.replace(
        SETTINGS, memory_layout=layout, retrieval_top_k=3, memory_min_relevance=0.0, memory_margin=1.0
    )
    fake_engine.queue("On the windowsill.")
    reply = replies.answer(db, fake_engine, settings, "Where did I move the basil?")
    shown = prompt_text(fake_engine.prompts[-1])
    assert len(reply.sources) == 3
    for source in reply.sources:
        assert " ".join(source.text.split()) in " ".join(shown.split())
    for other in memory_texts(db) - {s.text for s in reply.sources}:
        assert other not in shown
    assert [s.id for s in memory_store.used_by(db, reply.message_id)] == [s.id for s in reply.sources]
    if layout == "system":
        assert shown.startswith("You are a test.\n\n" + prompts.MEMORY_HEADER)
    else:
        user_turn = fake_engine.prompts[-1][-1]["content"]
        assert user_turn.startswith(prompts.NOTES_HEADER) and user_turn.endswith("Where did I move the basil?")
        assert fake_engine.prompts[-1][0]["content"] == "You are a test."


def test_copy_bias_favours_the_tokens_of_the_notes_given(db, fake_engine, tmp_path):
    plant(db, tmp_path, NOTES)
    fake_engine.queue("Biscuit.", "Hi.")
    replies.answer(db, fake_engine, SETTINGS, "What is the name of the neighbours' dog?")
    assert set(fake_engine.favoured[-1]) == set(fake_engine.tokenize(NOTES[3])) | set(
        fake_engine.tokenize(" " + NOTES[3])
    )
    replies.answer(db, fake_engine, SETTINGS, "Say hello in five words.")
    assert fake_engine.favoured[-1] == []


def test_a_record_is_given_whole_however_it_was_cut(db, tmp_path):
    """An article's headline and its body end up in different snippets; the answer gets both."""
    body = " ".join(f"Sentence {i} about the harbour bridge repairs and the ferry timetable." for i in range(20))
    path = tmp_path / "LaMP_4_questions.json"
    path.write_text(
        json.dumps(
            [
                {
                    "id": "1",
                    "input": "Generate a headline for the following article: x",
                    "profile": [{"id": "a", "title": "Bridge closed for a month", "text": body}],
                }
            ]
        )
    )
    ingest.import_paths(db, [path])
    parts = memory_store.listing(db)
    assert len(parts) > 1, "the article was cut into several snippets"
    found = recall.recall(db, "ferry timetable during the bridge repairs", k=2)
    assert len(found) == 1, "one record, however many of its snippets matched"
    whole = found[0].memory
    assert whole.text.startswith("Bridge closed for a month\n") and "Sentence 19" in whole.text
    assert set(whole.ids) == {p.id for p in parts}
    long_ones = recall.recall(db, "ferry timetable during the bridge repairs", k=2, record_words=50)
    assert long_ones[0].memory.ids == (long_ones[0].memory.id,), "a long record is given by passage"


def test_a_text_remembered_several_times_is_given_once(db):
    """A thing said four times is stored four times; the answer gets it once, and the places
    the copies would have taken go to other memories."""
    text = "I wave to the lighthouse keeper on my morning walk."
    note = "The lighthouse keeper's name is Agnes and she says hello every morning."
    for said in (text, text, text, text, note):
        message = convs.add_message(db, convs.create_conversation(db), "user", said)
        with transaction(db):
            told.store(db, message, [facts.Said(said, facts.FACT)])
    found = recall.recall(db, "Say hello to the lighthouse keeper.", k=3)
    texts = [r.memory.text for r in found]
    assert texts.count(text) == 1
    assert note in texts


def test_demos_layout_shows_task_records_as_earlier_turns(db, fake_engine, tmp_path):
    from assistant.tasks import prompt

    profile = [
        {
            "id": str(i),
            "title": f"Storm number {i} hits the coast",
            "text": f"Winds of {100 + i} km/h closed roads on the coast on day {i}.",
        }
        for i in range(4)
    ]
    path = tmp_path / "LaMP_4_questions.json"
    path.write_text(json.dumps([{"id": "1", "input": prompt("LaMP_4", text="x"), "profile": profile}]))
    ingest.import_paths(db, [path])
    fake_engine.queue("Storm hits coast", "Roads")
    question = prompt("LaMP_4", text="Winds of 120 km/h closed the coast roads today.")
    reply = replies.answer(db, fake_engine, SETTINGS, question)
    chat = fake_engine.prompts[-1]
    roles = [m["role"] for m in chat]
    demos = (len(roles) - 2) // 2
    assert demos >= 2 and roles == ["system"] + ["user", "assistant"] * demos + ["user"]
    assert chat[-1]["content"] == question, "the request itself is left as it was"
    assert chat[2]["content"].startswith("Storm number") and chat[1]["content"].startswith("Generate a headline")
    assert len(reply.sources) == demos, "each demonstration is a source under the answer"
    # The same records, for a message that is not a headline request, are quoted notes.
    replies.answer(db, fake_engine, SETTINGS, "Which storm closed the roads with winds of 101 km/h?")
    chat = fake_engine.prompts[-1]
    assert [m["role"] for m in chat] == ["system", "user"] and chat[-1]["content"].startswith(prompts.NOTES_HEADER)


def test_task_messages_are_searched_by_their_content(db, tmp_path):
    from assistant.tasks import content_of, prompt

    assert content_of(prompt("LaMP_7", text="Flu season starts early"), "LaMP_7") == "Flu season starts early"
    assert content_of(prompt("LaMP_4", text="A long article."), "LaMP_4") == "A long article."
    assert (
        content_of("paraphrase the following  tweet without any explanation before or after it: Hi", "LaMP_7") == "Hi"
    )


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("question", ["?", "x", "What is my sister allergic to?"])
def test_empty_or_emptied_store_answers_normally(db, fake_engine, tmp_path, question):
    fake_engine.queue("one", "two")
    assert replies.answer(db, fake_engine, SETTINGS, question).sources == []
    plant(db, tmp_path, NOTES)
    memory_store.forget_everything(db)
    assert replies.answer(db, fake_engine, SETTINGS, question).sources == []


def test_a_huge_single_line_note_is_cut_and_answers_normally(db, fake_engine, tmp_path):
    line = "peanut" + "x" * 400_000  # one 400,000-character word: no space to cut at
    (tmp_path / "huge.txt").write_text(line)
    ingest.import_paths(db, [tmp_path / "huge.txt"], max_mb=1)
    assert max(len(s.text) for s in memory_store.listing(db, limit=10_000)) <= 2000
    fake_engine.queue("Fine.")
    reply = replies.answer(db, fake_engine, SETTINGS, "What is my sister allergic to?")
    assert reply.status == "complete"
    assert sum(len(m["content"]) for m in fake_engine.prompts[-1]) < 20_000


# -- the real engine ------------------------------------------------------------------------------


@pytest.mark.real
def test_copy_bias_makes_the_real_model_use_the_note(db, clean_engine, tmp_path):
    """The default model with the default settings answers from the note it is given; with
    no memory it cannot know the answer."""
    plant(db, tmp_path, NOTES + ["cabin wifi password: maple-otter-42"])
    settings = dataclasses.replace(Settings(), seed=0, max_tokens=32)
    reply = replies.answer(db, clean_engine, settings, "What's the wifi password at the cabin?")
    assert "maple-otter-42" in reply.text
    assert [s.text for s in reply.sources] == ["cabin wifi password: maple-otter-42"]
    bare = replies.answer(db, clean_engine, settings, "What's the wifi password at the cabin?", use_memory=False)
    assert "maple-otter-42" not in bare.text


def test_a_records_snippets_are_found_by_index(db):
    plan = db.execute(
        "EXPLAIN QUERY PLAN SELECT id, text FROM snippets WHERE source_id = 1 AND record = 3 ORDER BY position"
    ).fetchall()
    assert "snippets_by_record" in " ".join(str(row) for row in plan), "store.whole_record's lookup uses the index"
