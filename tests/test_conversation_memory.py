"""Conversation memory: what the user says in chat is remembered as facts, updates supersede,
personal questions find their memory, and "I don't know yet" when nothing does.

Real database and embeddings; the engine is the fake one except where marked `real`.
"""

import dataclasses
import subprocess
import time

import pytest

from assistant import replies
from assistant.memory import facts, recall, told
from assistant.memory import store as memory_store
from assistant.settings import Settings
from assistant.store import conversations as convs
from tests.conftest import MYNA, run_env

SETTINGS = Settings(system_prompt="You are a test.")


def say(db, engine, text, conversation_id=None, settings=SETTINGS):
    engine.queue("Noted.")
    return replies.answer(db, engine, settings, text, conversation_id=conversation_id)


def memories(db):
    return [s.text for s in memory_store.listing(db, limit=1000)]


def current(db):
    return [s.text for s in told.current(db)]


# -- what a message tells -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message, kept",
    [
        (
            "Hi! I just adopted a dog called Biscuit. What food do puppies need?",
            ["I just adopted a dog called Biscuit."],
        ),
        ("my cat pickles keeps scratching the sofa, any tips? 😩", ["My cat pickles keeps scratching the sofa."]),
        (
            "my daughter Hana is 5 and obsessed with trains, suggest a weekend trip",
            ["My daughter Hana is 5 and obsessed with trains."],
        ),
        ("What tyre pressure should I run? I ride a Canyon road bike.", ["I ride a Canyon road bike."]),
        ("Since I'm vegetarian, what can I cook tonight?", ["I'm vegetarian."]),
        (
            "Can you suggest a dessert for my sister Mia, who is allergic to peanuts?",
            ["My sister Mia is allergic to peanuts."],
        ),
        ("btw my bike lock code is 4471, don't let me forget it", ["My bike lock code is 4471."]),
        (
            "Please remember that the spare key is under the blue flowerpot.",
            ["The spare key is under the blue flowerpot."],
        ),
    ],
)
def test_a_mixed_message_keeps_its_fact_and_drops_its_question(message, kept):
    assert [s.text for s in told.pieces(message)] == kept


@pytest.mark.parametrize(
    "message",
    [
        "Write a two-line haiku about autumn.",
        "Can you explain what a mortgage offset account is?",
        "ok that makes sense, thank you",
        "Hmm, I'm not sure about that.",
        "lol ok",
        "Translate 'good morning' into Spanish.",
        "where did I put the keys",
        "?!...",
        "Generate a headline for the following article: Storms closed the coast roads.",
    ],
)
def test_a_pure_request_or_an_acknowledgement_tells_nothing(message):
    assert told.pieces(message) == []


def test_a_preference_about_answers_is_its_own_memory():
    said = told.pieces("Please keep your answers short, I read them on my phone. What's a heat pump?")
    assert [(s.kind, s.text) for s in said] == [
        (facts.PREFERENCE, "Please keep your answers short, I read them on my phone.")
    ]


def test_a_message_left_in_memory_with_the_message_as_its_source(db, fake_engine):
    reply = say(db, fake_engine, "Hi! I just adopted a dog called Biscuit. What food do puppies need?")
    assert memories(db) == ["I just adopted a dog called Biscuit."]
    [memory] = told.left_by(db, reply.user_message_id)
    assert memory.message_id == reply.user_message_id and memory.origin.startswith("chat")
    assert "What food" not in " ".join(memories(db))
    say(db, fake_engine, "Write a two-line haiku about autumn.")
    say(db, fake_engine, "thanks!")
    assert memories(db) == ["I just adopted a dog called Biscuit."], "a pure request and a thank-you leave nothing"


def test_what_a_message_left_is_said_back_to_the_user(db, fake_engine):
    pending = replies.begin(db, fake_engine, SETTINGS, "I just adopted a dog called Biscuit. Puppy food?")
    [remembered] = pending.remembered
    assert remembered.summary == "you just adopted a dog called Biscuit"
    assert facts.as_told("My wife and I moved to Porto; I'm happy.") == "your wife and you moved to Porto; you're happy"


def test_memory_from_chat_off_remembers_nothing(db, fake_engine):
    settings = dataclasses.replace(SETTINGS, memory_from_chat="off")
    say(db, fake_engine, "I just adopted a dog called Biscuit.", settings=settings)
    assert memories(db) == []


# -- updates ----------------------------------------------------------------------------------------


def test_an_update_supersedes_and_the_old_one_stays_in_history(db, fake_engine):
    say(db, fake_engine, "Our team standup is at 9:15 every weekday, which is way too early. Tips for waking up?")
    pending = replies.begin(db, fake_engine, SETTINGS, "Update: the standup moved to 10:00 from next week.")
    [remembered] = pending.remembered
    [old] = remembered.replaced
    assert old.text == "Our team standup is at 9:15 every weekday."
    assert "replacing what you said before" in remembered.summary
    assert current(db) == ["The standup moved to 10:00 from next week."]
    assert len(memories(db)) == 2, "the old one is kept"
    found = [r.memory.text for r in replies.recall_for(db, SETTINGS, "When is the standup?")]
    assert found == ["The standup moved to 10:00 from next week."]
    [line] = told.lineage(db, memory_store.get(db, old.id))
    assert line.startswith(f"Replaced by [{remembered.memory.id}]")
    # Forgetting the newer one makes the older one current again.
    memory_store.delete(db, [remembered.memory.id])
    assert current(db) == ["Our team standup is at 9:15 every weekday."]


def test_a_statement_about_someone_else_never_replaces_one_about_another(db, fake_engine):
    say(db, fake_engine, "My sister Mia is allergic to peanuts.")
    say(db, fake_engine, "My brother Luís is allergic to cats, luckily not dogs.")
    say(db, fake_engine, "I drive a blue 2014 Skoda Octavia.")
    assert len(current(db)) == 3


@pytest.mark.parametrize(
    "older, newer, updates",
    [
        (
            "We have brunch with my parents every Sunday at 11.",
            "Mum asked to move our family brunch to Saturdays now.",
            True,
        ),
        ("My car is a silver Toyota Yaris.", "I sold the Yaris, I drive a little electric Fiat 500 now.", True),
        ("Every morning at 7 I walk to the harbour.", "Since the clocks went back we walk at 8 instead of 7.", True),
        ("I'm a game developer at a small studio in Osaka.", "We build our game in Unity right now.", False),
        ("My sister Mia is allergic to peanuts.", "My brother Luís is allergic to cats.", False),
    ],
)
def test_what_counts_as_an_update(db, fake_engine, older, newer, updates):
    say(db, fake_engine, older)
    pending = replies.begin(db, fake_engine, SETTINGS, newer)
    assert bool(pending.remembered[0].replaced) is updates


def test_the_prompt_gets_the_newest_with_the_day_it_was_said(db, fake_engine):
    say(db, fake_engine, "We're moving from Lyon to Porto next month.")
    say(db, fake_engine, "The move is done: we now live in Porto, on Rua das Flores.")
    fake_engine.queue("In Porto.")
    reply = replies.answer(db, fake_engine, SETTINGS, "Where do I live?")
    assert [s.text for s in reply.sources] == ["The move is done: we now live in Porto, on Rua das Flores."]
    user_turn = fake_engine.prompts[-1][-1]["content"]
    assert "Rua das Flores" in user_turn and "Lyon" not in user_turn
    assert "(said on " in user_turn


# -- finding what was told, and not finding what was not ----------------------------------------------


@pytest.mark.parametrize(
    "said, asked",
    [
        ("The move is done: we now live in Porto, on Rua das Flores.", "Where do I live?"),
        ("I just adopted a dog called Biscuit.", "Which pet do I have?"),
        ("I've started learning the cello, lessons are on Thursdays at 6pm.", "When are my music lessons?"),
        ("I'm vegetarian, so recipes should never include meat.", "Do I eat meat?"),
        ("I work night shifts as a nurse at the Charité.", "What's my profession?"),
    ],
)
def test_a_personal_question_finds_what_was_said_in_other_words(db, fake_engine, said, asked):
    say(db, fake_engine, said)
    say(db, fake_engine, "My partner Jonas is a chef and he hates coriander.")
    fake_engine.queue("An answer.")
    reply = replies.answer(db, fake_engine, SETTINGS, asked)
    assert said.split(",")[0].rstrip(".") in " ".join(s.text for s in reply.sources), asked
    assert reply.finish != "known"


def test_an_unrelated_question_still_gets_no_sources(db, fake_engine):
    for text in ("I just adopted a dog called Biscuit.", "I drive a blue 2014 Skoda Octavia.", "I'm vegetarian."):
        say(db, fake_engine, text)
    for question in ("Say hello in five words.", "What is the capital of Australia?", "How do I boil an egg?"):
        fake_engine.queue("An answer.")
        reply = replies.answer(db, fake_engine, SETTINGS, question)
        assert reply.sources == [] and reply.finish != "known", question


def test_a_never_said_personal_question_gets_i_dont_know(db, fake_engine):
    say(db, fake_engine, "I just adopted a dog called Biscuit.")
    generated = len(fake_engine.favoured)  # one entry per call of generate()
    reply = replies.answer(db, fake_engine, SETTINGS, "What is my blood type?")
    assert reply.finish == "known" and reply.text.startswith("I don't know yet")
    assert "Tell me" in reply.text and reply.sources == []
    assert convs.messages(db, reply.conversation_id)[-1].text == reply.text, "the reply is kept like any other"
    assert len(fake_engine.favoured) == generated, "the model was not asked to invent one"
    again = replies.stream(
        db, fake_engine, SETTINGS, replies.begin_again(db, fake_engine, SETTINGS, reply.conversation_id)
    )
    assert again.text == reply.text and len(fake_engine.favoured) == generated, "nor when it is asked again"
    assert "about your cat" in replies.answer(db, fake_engine, SETTINGS, "What's my cat's name?").text
    # ... but not when it was said in this very conversation, nor with memory off for the answer.
    first = say(db, fake_engine, "My blood type is O negative.")
    fake_engine.queue("O negative.")
    again = replies.answer(db, fake_engine, SETTINGS, "What is my blood type?", conversation_id=first.conversation_id)
    assert again.finish != "known"
    fake_engine.queue("No idea.")
    bare = replies.answer(db, fake_engine, SETTINGS, "What is my favourite colour?", use_memory=False)
    assert bare.finish != "known"


@pytest.mark.parametrize(
    "question, personal",
    [
        ("What's my dog called?", True),
        ("Where do I live?", True),
        ("Do I eat meat?", True),
        ("How old is my daughter?", True),
        ("Remind me what my dog is called", True),
        ("How do I boil an egg?", False),
        ("What should I name a new puppy?", False),
        ("What is the capital of Australia?", False),
        ("Can I freeze bread?", False),
        ("Write a poem about my dog.", False),
    ],
)
def test_which_questions_are_about_the_user(question, personal):
    assert facts.is_personal_question(question) is personal


def test_forgetting_a_remembered_fact_removes_it_from_retrieval(db, fake_engine):
    reply = say(db, fake_engine, "I drive a blue 2014 Skoda Octavia and it needs new tyres. Which kind for rain?")
    [memory] = told.left_by(db, reply.user_message_id)
    assert recall.recall(db, "What car do I drive?", k=4, told_floor=0.15)
    memory_store.delete(db, [memory.id])
    assert recall.recall(db, "What car do I drive?", k=4, told_floor=0.15) == []
    assert replies.answer(db, fake_engine, SETTINGS, "What car do I drive?").finish == "known"


# -- standing preferences -----------------------------------------------------------------------------


def test_a_standing_preference_goes_with_every_answer_and_shapes_it(db, fake_engine):
    say(db, fake_engine, "I prefer answers as bullet points, they're easier to skim.")
    fake_engine.queue("one\n- two")
    reply = replies.answer(db, fake_engine, SETTINGS, "What are the benefits of exercise?")
    assert fake_engine.prompts[-1][0]["content"].endswith("they're easier to skim.\"")
    assert reply.text == "- one\n- two", "the reply starts as a list"
    assert [s.kind for s in reply.sources] == [facts.PREFERENCE]
    say(db, fake_engine, "Please keep your answers short.")
    fake_engine.queue(" ".join(f"Sentence {i} has five words." for i in range(12)))
    short = replies.answer(db, fake_engine, SETTINGS, "Explain how a heat pump works.")
    assert short.status == "complete" and short.finish == "stop", "ended by the preference, not cancelled"
    assert facts.SHORT_ANSWER_WORDS <= len(short.text.split()) <= facts.SHORT_ANSWER_WORDS + 6
    assert short.text.endswith("words."), "at the end of a sentence"


def test_a_reply_that_repeats_a_sentence_ends_there(db, fake_engine):
    say(db, fake_engine, "Our team standup is at 10:00 every weekday.")
    fake_engine.queue("The standup is at 10:00. It is short. The standup is at 10:00. The standup is at 10:00.")
    reply = replies.answer(db, fake_engine, SETTINGS, "When is my standup?")
    assert reply.text == "The standup is at 10:00. It is short. The standup is at 10:00."
    assert reply.status == "complete" and reply.finish == "stop"
    fake_engine.queue("Yes. No. Yes. No.")
    assert replies.answer(db, fake_engine, SETTINGS, "Is it?").text == "Yes. No. Yes. No.", "short sentences may recur"


def test_what_someone_cannot_eat_goes_with_every_question_about_food(db, fake_engine):
    say(db, fake_engine, "I'm vegetarian, so recipes should never include meat. What can I cook tonight?")
    say(db, fake_engine, "My brother is allergic to cats.")
    fake_engine.queue("Pasta with tomatoes.")
    reply = replies.answer(db, fake_engine, SETTINGS, "Suggest something quick for dinner.")
    assert [s.text for s in reply.sources] == ["I'm vegetarian, so recipes should never include meat."]
    assert replies.answer(db, fake_engine, SETTINGS, "What's my favourite food?").finish == "known", (
        "a rule that applies to food does not answer a question about a favourite"
    )
    fake_engine.queue("Puppy food.")
    reply = replies.answer(db, fake_engine, SETTINGS, "I got a puppy last week. What food do puppies need?")
    assert "vegetarian" not in " ".join(s.text for s in reply.sources), "the owner's diet does not bind the dog's"


# -- existing stores ----------------------------------------------------------------------------------


def test_the_migration_sifts_messages_stored_before(db):
    """A store from before: whole messages were memories (mixed ones were dropped whole)."""
    from assistant.store import migrations

    conversation = convs.create_conversation(db)
    said = [
        "Hi! I just adopted a dog called Biscuit. What food do puppies need?",
        "Write a two-line haiku about autumn.",
        "Our flat is on the fourth floor.",
        "Please keep your answers short. Also I drive a Skoda.",
    ]
    ids = [convs.add_message(db, conversation, "user", text) for text in said]
    reply = convs.add_message(db, conversation, "assistant", "A reply.")
    with db.conn:
        db.execute("DELETE FROM snippets")
        for message_id, text in zip(ids[1:], said[1:]):  # the mixed first one was dropped whole
            db.execute(
                "INSERT INTO snippets (message_id, kind, text, content_hash, created_at) VALUES (?, 'chat user', ?, ?, ?)",
                (message_id, text, str(message_id), "2024-01-01"),
            )
        flat = db.execute("SELECT id FROM snippets WHERE message_id = ?", (ids[2],)).fetchone()[0]
        db.execute("INSERT INTO message_sources (message_id, snippet_id, rank) VALUES (?, ?, 1)", (reply, flat))
        db.execute("DELETE FROM _migrations WHERE name = 'm013_facts_from_chat'")
    assert migrations.migrate(db) == ["m013_facts_from_chat"]
    expected = {
        ("chat user", "I just adopted a dog called Biscuit."),
        ("chat user", "Our flat is on the fourth floor."),
        ("chat user", "I drive a Skoda."),
        ("preference", "Please keep your answers short."),
    }
    assert {(s.kind, s.text) for s in memory_store.listing(db)} == expected
    assert [s.id for s in memory_store.used_by(db, reply)] == [flat], "an old reply's source is kept"
    with db.conn:
        db.execute("DELETE FROM _migrations WHERE name = 'm013_facts_from_chat'")
    migrations.migrate(db)
    assert {(s.kind, s.text) for s in memory_store.listing(db)} == expected, "again: nothing duplicated"


# -- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "?!?!...,,,",
        "我养了一只狗，叫饼干。它喜欢吃什么？",
        "Ich habe einen Hund namens Keks. Was fressen Welpen?",
        " ".join(f"Point {i} is fine." for i in range(500)),
    ],
)
def test_odd_messages_answer_normally_and_lose_nothing(db, fake_engine, message):
    start = time.perf_counter()
    said = told.pieces(message)
    assert time.perf_counter() - start < 0.05, "extraction adds at most 50 ms to a message"
    assert all(len(s.text) <= 2000 for s in said)
    fake_engine.queue("An answer.")
    fake_engine.context_size = 16384
    reply = replies.answer(db, fake_engine, SETTINGS, message)
    assert reply.status == "complete"
    assert convs.messages(db, reply.conversation_id)[0].text == message


def test_a_huge_message_is_refused_in_one_sentence_and_stores_nothing(db, fake_engine):
    from assistant.errors import MynaError

    with pytest.raises(MynaError, match="shorten it"):
        replies.answer(db, fake_engine, SETTINGS, "I like tea. " * 2_000_000)
    assert convs.list_conversations(db) == [] and memories(db) == []


# -- the real model, through `myna ask` ----------------------------------------------------------------


@pytest.mark.real
def test_myna_ask_remembers_a_fact_said_in_passing_and_says_when_it_does_not_know(myna_home):
    """A fresh data folder, the default model, as a new user would: the fact said inside a
    request is remembered (and said so on standard error), answers a question about it in a
    new conversation, and a question about something never said gets "I don't know yet"."""

    def ask(*args):
        done = subprocess.run(
            [MYNA, "ask", "--temperature", "0", "--max-tokens", "24", *args],
            env=run_env(myna_home),
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
        return done

    told_it = ask("I drive a blue 2014 Skoda Octavia and it needs new tyres. Which kind is best for rain?")
    assert "Remembered: you drive a blue 2014 Skoda Octavia" in told_it.stderr
    assert "Remembered" not in ask("--quiet", "My partner Jonas is a chef and he hates coriander.").stderr
    asked = ask("--sources", "What car do I drive?")
    assert "Skoda" in asked.stdout and "Octavia" in asked.stdout.split("Sources:")[1]
    unknown = ask("What is my cat's name?")
    assert unknown.stdout.startswith("I don't know yet: you haven't told me about your cat.")


def test_a_known_reply_records_a_prompt_without_memory(db, fake_engine):
    """A reply of "I don't know yet" is written without the model, so the prompt recorded with
    it holds none of the memories (here a standing one, given to food questions) it did not use."""
    say(db, fake_engine, "I'm vegetarian.")
    asked = "What is my favourite dish?"
    reply = replies.answer(db, fake_engine, SETTINGS, asked)
    assert reply.finish == "known" and reply.sources == []
    bare, _ = replies.build(db, fake_engine, SETTINGS, asked, [], None, False)
    with_memory, grounded = replies.build(db, fake_engine, SETTINGS, asked, [], None, True)
    assert grounded.used, "memory holds something for the question, which the known reply leaves out"
    assert convs.messages(db, reply.conversation_id)[-1].prompt_tokens == len(bare.tokens) < len(with_memory.tokens)
