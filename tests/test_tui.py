"""The chat app, driven with Textual's pilot."""

import contextlib
import os
import threading
import time

import pytest
from textual import events
from textual.widgets._footer import FooterKey

from assistant.errors import MynaError
from assistant.store import conversations as convs
from tui.app import MynaApp
from tui.screens import ConfirmScreen
from tui.widgets.chat_view import ChatView, MessageView, Welcome
from tui.widgets.conversation_list import ConversationList

SIZE = (110, 36)


async def wait_until(pilot, predicate, hang_guard=float(os.environ.get("HANG_GUARD", 600))):
    """Wait for what the app shows; the guard only catches a hang, a slow machine just waits."""
    deadline = time.monotonic() + hang_guard
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {hang_guard:.0f} s: the app hangs")
        await pilot.pause(0.02)


async def send(pilot, text):
    await pilot.click("#prompt")
    await pilot.press(*text)
    await pilot.press("enter")


def views(app):
    return list(app.query_one(ChatView).query(MessageView))


def rendered(widget) -> str:
    """The widget's text as it is drawn now (its current region, borders included)."""
    return "\n".join(strip.text for strip in widget.render_lines(widget.region.reset_offset))


@contextlib.asynccontextmanager
async def answered(fake_engine, reply: str, question: str = "Question"):
    """The app, run until it has answered one question with `reply`."""
    fake_engine.queue(reply)
    app = MynaApp(engine_factory=lambda settings: fake_engine)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, question)
        await wait_until(pilot, lambda: not app.replying and len(views(app)) == 2)
        yield app, pilot


async def test_typed_message_gets_a_streamed_reply_stored(db, fake_engine, monkeypatch):
    fake_engine.queue("Hello there, how can I help?")
    pieces = []
    original = MessageView.append
    monkeypatch.setattr(MessageView, "append", lambda self, piece: (pieces.append(piece), original(self, piece)))
    app = MynaApp(engine_factory=lambda settings: fake_engine)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "Hi Myna")
        await wait_until(pilot, lambda: not app.replying and len(views(app)) == 2)
        assert [v.text for v in views(app)] == ["Hi Myna", "Hello there, how can I help?"]
        assert len(pieces) == 6, "the reply arrived token by token"
        assert app.query_one("#prompt").value == ""
        listed = app.query_one(ConversationList)
        await wait_until(pilot, lambda: listed.settled)
        assert [item.conversation.title for item in listed.children] == ["Hi Myna"]
    [conv] = convs.list_conversations(db)
    assert conv.title == "Hi Myna"
    assert [(m.role, m.text, m.status) for m in convs.messages(db, conv.id)] == [
        ("user", "Hi Myna", "complete"),
        ("assistant", "Hello there, how can I help?", "complete"),
    ]


@pytest.mark.parametrize("key", ["escape", "ctrl+c"])
async def test_stop_key_stops_a_reply_and_keeps_it(db, fake_engine, key):
    fake_engine.queue(" ".join(f"w{i}" for i in range(400)))
    fake_engine.piece_delay = threading.Event()  # never set: each piece waits 50 ms
    app = MynaApp(engine_factory=lambda settings: fake_engine)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "Count")
        await wait_until(pilot, lambda: len(views(app)) == 2 and views(app)[1].text.count("w") >= 3)
        await wait_until(pilot, lambda: "escape" in {k.key for k in app.query(FooterKey)})  # "Stop" shows
        await pilot.press(key)
        await wait_until(pilot, lambda: not app.replying)
        shown = views(app)[1].text
        assert views(app)[1].status == "interrupted"
    reply = convs.get_message(db, 2)
    assert reply.status == "interrupted"
    assert reply.text == shown and 0 < len(reply.text.split()) < 400


async def test_scrolling_up_during_a_reply_is_not_pulled_down(db, fake_engine):
    fake_engine.queue(" ".join(f"w{i}" for i in range(400)))
    fake_engine.piece_delay = threading.Event()  # never set: each piece waits 50 ms
    app = MynaApp(engine_factory=lambda settings: fake_engine)
    async with app.run_test(size=(60, 16)) as pilot:
        chat = app.query_one(ChatView)
        await send(pilot, "Count")
        await wait_until(pilot, lambda: chat.max_scroll_y > 6)  # the reply is taller than the view
        assert chat.scroll_y == chat.max_scroll_y, "it follows the reply"
        chat.focus()
        await pilot.press("home")  # the user scrolls up to read
        grown = chat.max_scroll_y
        await wait_until(pilot, lambda: chat.max_scroll_y > grown + 2)  # more of the reply arrives
        assert chat.scroll_y < grown, "it stays where the user is reading"
        await wait_until(pilot, lambda: chat.scroll_y == 0)
        await pilot.press("end")  # back at the end: it follows again
        await wait_until(pilot, lambda: chat.scroll_y == chat.max_scroll_y)
        bottom = chat.max_scroll_y
        await wait_until(pilot, lambda: chat.max_scroll_y > bottom + 2)
        await wait_until(pilot, lambda: chat.scroll_y == chat.max_scroll_y)
        await pilot.press("escape")
        await wait_until(pilot, lambda: not app.replying)


async def test_a_pasted_multi_line_message_is_sent_whole(db, fake_engine):
    fake_engine.queue("Noted.")
    app = MynaApp(engine_factory=lambda settings: fake_engine)
    async with app.run_test(size=SIZE) as pilot:
        prompt = app.query_one("#prompt")
        prompt.focus()
        app.post_message(events.Paste("line one\nline two\nline three"))  # as the terminal sends it
        await wait_until(pilot, lambda: prompt.text.count("\n") == 2)
        await pilot.press("shift+enter", *"four", "ctrl+j", *"five")  # new lines, not sends
        assert views(app) == []
        await pilot.press("enter")
        await wait_until(pilot, lambda: not app.replying and len(views(app)) == 2)
        assert prompt.text == ""
    sent = convs.messages(db, convs.latest_conversation_id(db))[0]
    assert sent.text == "line one\nline two\nline three\nfour\nfive"
    assert fake_engine.prompts[-1][-1]["content"].endswith("line three\nfour\nfive")


async def test_model_failure_is_shown_and_nothing_is_lost(db):
    def broken(settings):
        raise MynaError("The model file /x.gguf does not exist; pass another with --model PATH.")

    app = MynaApp(engine_factory=broken)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.engine_error is not None)
        await send(pilot, "Hello?")
        await pilot.pause(0.1)
        assert app.query_one("#prompt").value == "Hello?", "the message stays in the input box"
        assert views(app) == []
        assert app.sub_title == "no model"
        assert any("does not exist" in str(n.message) for n in app._notifications)
    assert convs.list_conversations(db) == []


async def test_too_long_message_goes_back_to_the_input(db, fake_engine):
    fake_engine.context_size = 64
    app = MynaApp(engine_factory=lambda settings: fake_engine)
    async with app.run_test(size=SIZE) as pilot:
        text = "word " * 60
        app.query_one("#prompt").value = text
        await pilot.press("enter")
        await wait_until(pilot, lambda: not app.replying and app.query_one("#prompt").value == text)
        assert views(app) == []
    assert convs.list_conversations(db) == []


async def test_overlapping_list_updates_end_on_the_last_one(db, fake_engine):
    """A reply that starts and ends within a frame lists the conversations twice in a row; once
    that left one listed twice (CI, a busy machine). Growing, shrinking and relabelling calls
    made back to back must end on exactly the last call's list, its selection highlighted."""
    ids = [convs.create_conversation(db, f"Chat {n}") for n in range(3)]
    app = MynaApp(engine_factory=lambda settings: fake_engine)
    async with app.run_test(size=SIZE) as pilot:
        listed = app.query_one(ConversationList)
        await wait_until(pilot, lambda: listed.settled)
        every = convs.list_conversations(db)
        for shown in ([], every[:1], every, every[:1], every[:1], every, every):
            listed.show(shown, ids[0])
        convs.rename_conversation(db, ids[1], "Renamed")
        listed.show(convs.list_conversations(db)[:2], ids[1])
        await wait_until(pilot, lambda: listed.settled)
        await pilot.pause()
        assert [item.conversation.id for item in listed.children] == [ids[2], ids[1]]
        assert [str(item.query_one("Label").render()) for item in listed.children] == ["Chat 2", "Renamed"]
        assert listed.index == 1 and listed.highlighted_child is listed.children[1]


async def test_switch_rename_and_delete_conversations(db, fake_engine):
    first = convs.create_conversation(db)
    convs.add_message(db, first, "user", "first question")
    second = convs.create_conversation(db)
    convs.add_message(db, second, "user", "second question")
    convs.add_message(db, second, "assistant", "second answer")
    app = MynaApp(engine_factory=lambda settings: fake_engine)
    async with app.run_test(size=SIZE) as pilot:
        listing = app.query_one(ConversationList)
        await wait_until(pilot, lambda: len(listing.children) == 2)
        listing.focus()
        await pilot.press("down", "down", "enter")  # the older one, listed second
        await wait_until(pilot, lambda: app.conversation_id == first)
        assert [v.text for v in views(app)] == ["first question"]

        await pilot.press("f2")
        await wait_until(pilot, lambda: app.screen.query("#title"))
        app.screen.query_one("#title").value = "Renamed"
        await pilot.press("enter")
        await wait_until(pilot, lambda: convs.get_conversation(db, first).title == "Renamed")

        await pilot.press("f8")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("enter")  # the dialog's default is Cancel
        await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        assert app.conversation_id == first and len(convs.list_conversations(db)) == 2
        await pilot.press("f8")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: app.conversation_id is None and len(listing.children) == 1)
        # Hidden, and kept until the undo time is up: Ctrl+Z brings it back and opens it.
        assert len(convs.list_conversations(db)) == 2
        await pilot.press("ctrl+z")
        await wait_until(pilot, lambda: app.conversation_id == first and len(listing.children) == 2)
        assert [v.text for v in views(app)] == ["first question"]
        await pilot.press("ctrl+z")  # nothing to undo now: the message box's own undo, no error
        app.UNDO_SECONDS = 0.3
        await pilot.press("f8")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: [c.id for c in convs.list_conversations(db)] == [second])
        assert len(listing.children) == 1 and app.hidden_id is None
        # Deleted while the app closes: gone for good, not left behind.
        app.switch_to(second)
        app.UNDO_SECONDS = 60
        await pilot.press("f8")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: app.hidden_id == second)
    assert convs.list_conversations(db) == []


async def test_a_new_user_is_welcomed_with_the_first_steps(db, fake_engine):
    fake_engine.queue("Hello!")
    app = MynaApp(engine_factory=lambda settings: fake_engine)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.query(Welcome))
        shown = rendered(app.query_one(Welcome))
        assert "myna import" in shown and "F3" in shown and "F4" in shown and "Ctrl+P" in shown
        await send(pilot, "Hi")
        await wait_until(pilot, lambda: not app.replying and len(views(app)) == 2)
        assert not app.query(Welcome), "the conversation replaces it"
        await pilot.press("ctrl+n")  # a new, empty conversation welcomes again
        await wait_until(pilot, lambda: app.query(Welcome))


async def test_a_restart_restores_the_last_conversation_and_the_theme(db, fake_engine):
    from assistant import settings as settings_mod

    older = convs.create_conversation(db)
    convs.add_message(db, older, "user", "older question")
    last = convs.create_conversation(db)
    convs.add_message(db, last, "user", "last question")
    app = MynaApp(engine_factory=lambda settings: fake_engine)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: [v.text for v in views(app)] == ["last question"])
        assert app.conversation_id == last and app.theme == "textual-dark"
        app.theme = "nord"  # as the palette's "Change theme" does
        await wait_until(pilot, lambda: settings_mod.load(db).theme == "nord")
    again = MynaApp(engine_factory=lambda settings: fake_engine)
    async with again.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: again.conversation_id == last and len(views(again)) == 1)
        assert again.theme == "nord"
    fresh = MynaApp(new=True, engine_factory=lambda settings: fake_engine)
    async with fresh.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert fresh.conversation_id is None and views(fresh) == [] and fresh.query(Welcome)


async def test_rating_a_reply(db, fake_engine):
    async with answered(fake_engine, "A fine answer.") as (app, pilot):
        views(app)[1].focus()
        await pilot.press("plus")
        await wait_until(pilot, lambda: "rated good" in (views(app)[1].border_subtitle or ""))
        await pilot.press("c")  # copy the focused reply
        await wait_until(pilot, lambda: app.clipboard == "A fine answer.")
        assert any("Copied 14 characters" in str(n.message) for n in app._notifications)
    assert convs.get_message(db, 2).rating == 1

    convs.set_feedback(db, 2, rating=-1, correction="A better answer.")  # as `myna rate --correct` does
    reopened = MynaApp(conversation_id=convs.get_message(db, 2).conversation_id, engine_factory=lambda s: fake_engine)
    async with reopened.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: len(views(pilot.app)) == 2)
        reply = views(pilot.app)[1]
        assert reply.text == "A better answer." and reply.border_subtitle == "rated bad, corrected"


async def test_a_markdown_reply_is_rendered(db, fake_engine):
    reply = "1. **Use a Tomato Plant**: water it.\n\n```python\nprint('hi')\n```"
    async with answered(fake_engine, reply) as (app, pilot):
        view = views(app)[1]
        # The reply's final layout (a taller view) can land a frame after the reply ends.
        await wait_until(pilot, lambda: "Tomato" in rendered(view))
        shown = rendered(view)
        assert "Use a Tomato Plant" in shown and "**" not in shown and "```" not in shown
        assert "print('hi')" in shown
        row = next(strip for strip in view.render_lines(view.region.reset_offset) if "Tomato" in strip.text)
        assert any(segment.style and segment.style.bold for segment in row if "Tomato" in segment.text)
        assert views(app)[0].text == "Question"  # what the user typed stays as typed


async def test_the_palette_lists_myna_s_commands(db, fake_engine):
    from textual.command import CommandList, CommandPalette

    from tui.personalize_screen import PersonalizeScreen

    async with answered(fake_engine, "Copy me.") as (app, pilot):
        titles = [command.title for command in app.get_system_commands(app.screen)]
        assert {
            "New chat",
            "Rename chat",
            "Delete chat",
            "Copy last reply",
            "Answer again",
            "Chat settings",
            "Find a chat",
            "Memory",
            "Personalize",
        } <= set(titles)
        assert "Theme" in titles  # Textual's own stay
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"copy last")
        await wait_until(pilot, lambda: app.screen.query_one(CommandList).option_count > 0)
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.clipboard == "Copy me.")
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"personalize")
        await wait_until(pilot, lambda: app.screen.query_one(CommandList).option_count > 0)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonalizeScreen))


async def test_search_finds_a_conversation_by_a_word_in_its_text(db, fake_engine):
    from textual.command import CommandList, CommandPalette

    garden = convs.create_conversation(db, "Garden")
    convs.add_message(db, garden, "user", "When do the tomatoes go out?")
    trip = convs.create_conversation(db, "Trip")
    convs.add_message(db, trip, "user", "Which train reaches Lyon by noon?")
    app = MynaApp(engine_factory=lambda settings: fake_engine)
    async with app.run_test(size=SIZE) as pilot:
        listed = app.query_one(ConversationList)
        await wait_until(pilot, lambda: listed.settled)
        assert app.conversation_id == trip and len(listed.children) == 2
        await pilot.press("ctrl+f", *"tomato")  # the list keeps only the matches
        await wait_until(pilot, lambda: [i.conversation.id for i in listed.children] == [garden])
        await pilot.press("enter")  # opens the best match
        await wait_until(pilot, lambda: app.conversation_id == garden and app.query_one("#prompt").has_focus)
        assert "tomatoes" in views(app)[0].text
        await pilot.press("ctrl+f", "escape")  # leaving the box shows every conversation again
        await wait_until(pilot, lambda: len(listed.children) == 2)
        await pilot.press("ctrl+p")  # and from the palette
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"lyon")
        await wait_until(pilot, lambda: app.screen.query_one(CommandList).option_count > 0)
        assert "Open chat: Trip" in str(app.screen.query_one(CommandList).get_option_at_index(0).prompt)
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.conversation_id == trip)


async def test_answer_again_replaces_the_last_reply(db, fake_engine):
    async with answered(fake_engine, "A first try.") as (app, pilot):
        fake_engine.queue("A second try.")
        await pilot.press("ctrl+r")
        await wait_until(pilot, lambda: not app.replying and views(app)[-1].text == "A second try.")
        assert [v.text for v in views(app)] == ["Question", "A second try."]
        assert [m.text for m in convs.messages(db, app.conversation_id)] == ["Question", "A second try."]


async def test_a_conversation_gets_its_own_system_prompt_and_temperature(db, fake_engine):
    from textual.widgets import Input, TextArea

    from tui.screens import ChatSettingsScreen

    async with answered(fake_engine, "Hello.") as (app, pilot):
        await pilot.press("f9")
        await wait_until(pilot, lambda: isinstance(app.screen, ChatSettingsScreen))
        await pilot.pause()  # laid out, so the clicks land
        assert app.screen.query_one("#system", TextArea).text == app.settings.system_prompt
        app.screen.query_one("#system", TextArea).load_text("Answer in one word.")
        app.screen.query_one("#temperature", Input).value = "9"
        await pilot.click("#save")
        await wait_until(pilot, lambda: "out of range" in str(app.screen.query_one("#settings-error").content))
        # A button ignores clicks while it shows the last one (Textual's active effect).
        await wait_until(pilot, lambda: not app.screen.query_one("#save").has_class("-active"))
        app.screen.query_one("#temperature", Input).value = "0.7"
        await pilot.click("#save")
        await wait_until(pilot, lambda: not isinstance(app.screen, ChatSettingsScreen))
        fake_engine.queue("Fine.")
        await send(pilot, "How are you?")
        await wait_until(pilot, lambda: not app.replying and len(views(app)) == 4)
        assert fake_engine.prompts[-1][0]["content"] == "Answer in one word."
        assert fake_engine.params[-1].temperature == 0.7
    conversation = convs.get_conversation(db, convs.latest_conversation_id(db))
    assert (conversation.system_prompt, conversation.temperature) == ("Answer in one word.", 0.7)


async def test_window_appears_before_the_model_is_loaded(db, fake_engine):
    loaded = threading.Event()

    def slow(settings):
        loaded.wait(5)
        return fake_engine

    app = MynaApp(engine_factory=slow)
    async with app.run_test(size=SIZE) as pilot:
        assert app.query_one("#prompt").has_focus
        assert app.sub_title == "loading the model…"
        fake_engine.queue("ready now")
        await send(pilot, "typed while loading")
        await wait_until(pilot, lambda: app.replying)
        loaded.set()
        await wait_until(pilot, lambda: not app.replying)
        assert views(app)[1].text == "ready now"


@pytest.mark.real
async def test_real_model_reply_in_the_app(db, clean_engine):
    app = MynaApp(engine_factory=lambda settings: clean_engine)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await send(pilot, "What is the capital of France?")
        await wait_until(pilot, lambda: not app.replying and len(views(app)) == 2)
        shown = views(app)[1].text
    [conv] = convs.list_conversations(db)
    reply = convs.messages(db, conv.id)[1]
    assert reply.status == "complete"
    assert reply.text == shown and reply.text.strip()
    assert reply.model == "smollm2-135m-instruct-q4_1"
    assert reply.completion_tokens > 0


async def test_sources_under_a_reply_open_the_memory(db, fake_engine, tmp_path):
    from assistant.memory import ingest
    from tui.memory_screen import SnippetScreen
    from tui.widgets.sources import SourcesBar

    (tmp_path / "n.txt").write_text("My cat is called Miso.")
    ingest.import_paths(db, [tmp_path / "n.txt"])
    fake_engine.queue("Your cat is Miso.")
    app = MynaApp(engine_factory=lambda settings: fake_engine)
    async with app.run_test(size=SIZE) as pilot:
        await send(pilot, "What is my cat called?")
        await wait_until(pilot, lambda: not app.replying and app.query(SourcesBar))
        bar = app.query_one(SourcesBar)
        assert [s.text for s in bar.snippets] == ["My cat is called Miso."]
        button = bar.query_one("Button")
        assert "n.txt" in str(button.label)
        button.press()
        await wait_until(pilot, lambda: isinstance(app.screen, SnippetScreen))
        assert app.screen.snippet.text == "My cat is called Miso."
        await pilot.press("escape")
        # reopening the conversation shows the same sources
        app.open_conversation(app.conversation_id)
        await wait_until(pilot, lambda: len(app.query(SourcesBar)) == 1)


@pytest.mark.parametrize("size", [(80, 24), (90, 30)])
async def test_a_small_terminal_keeps_every_key_and_source_in_view(db, fake_engine, tmp_path, size):
    from assistant.memory import ingest
    from tui.widgets.sources import SourcesBar

    for name, where in (("garden-notes-from-last-summer.txt", "garden"), ("cats.txt", "kitchen")):
        (tmp_path / name).write_text(f"My cat Miso sleeps in the {where} among the tomatoes.")
    ingest.import_paths(db, [tmp_path / "garden-notes-from-last-summer.txt", tmp_path / "cats.txt"])
    fake_engine.queue("Miso sleeps in the garden.")
    app = MynaApp(engine_factory=lambda settings: fake_engine)
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.query_one("#sidebar").outer_size.width == 22)  # narrowed
        footer = {key.key: key for key in app.query(FooterKey)}
        assert "f8" not in footer, "no conversation open: no key to delete one"
        await send(pilot, "Where does my cat sleep?")
        await wait_until(pilot, lambda: not app.replying and app.query(SourcesBar))
        await pilot.pause()
        keys = {key.key: key for key in app.query(FooterKey)}
        assert {"ctrl+n", "f2", "f3", "f4", "f8", "ctrl+q", "ctrl+p"} <= set(keys) and "escape" not in keys
        cut = {k: (key.region.x, key.region.right) for k, key in keys.items()}
        assert all(key.region.right <= size[0] for key in keys.values()), f"a key is cut off: {cut}"
        buttons = list(app.query_one(SourcesBar).query("Button"))
        assert len(buttons) == 2
        for button in buttons:
            assert button.region.right <= size[0] and button.size.width >= len(str(button.label))


async def test_memory_screen_searches_and_deletes(db, fake_engine, tmp_path):
    import json

    from assistant.memory import ingest
    from assistant.memory import store as memory_store
    from tui.memory_screen import MemoryScreen, SnippetItem, SnippetScreen

    notes = tmp_path / "n.jsonl"
    notes.write_text("\n".join(json.dumps({"text": t}) for t in ["I play the cello.", "I hate mushrooms."]))
    ingest.import_paths(db, [notes])
    app = MynaApp(engine_factory=lambda settings: fake_engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f3")
        await wait_until(pilot, lambda: isinstance(app.screen, MemoryScreen))
        screen = app.screen
        assert len(screen.query(SnippetItem)) == 2
        # Its footer has its own keys, not the chat's that do nothing here.
        await wait_until(pilot, lambda: "f9" in {k.key for k in screen.query(FooterKey)})
        assert not {"ctrl+n", "f2", "f3", "f4", "f8"} & {k.key for k in screen.query(FooterKey)}
        await pilot.press(*"tomato")  # related to nothing remembered: nothing listed
        await wait_until(
            pilot, lambda: "Nothing found for 'tomato'" in str(screen.query_one("#memory-status").render())
        )
        assert not screen.query(SnippetItem)
        await pilot.press(*["backspace"] * 6, *"musical instrument")
        await wait_until(
            pilot, lambda: "found for 'musical instrument'" in str(screen.query_one("#memory-status").render())
        )
        assert [item.snippet.text for item in screen.query(SnippetItem)] == ["I play the cello."]  # by meaning
        await pilot.press("enter")  # from the search box: the best match opens
        await wait_until(pilot, lambda: isinstance(app.screen, SnippetScreen))
        assert "cello" in app.screen.snippet.text
        await pilot.press("d")
        await pilot.press("y")
        await wait_until(pilot, lambda: app.screen is screen)
    assert [s.text for s in memory_store.listing(db)] == ["I hate mushrooms."]


async def test_memory_toggle(db, fake_engine, tmp_path):
    from assistant.memory import ingest

    (tmp_path / "n.txt").write_text("My cat is called Miso.")
    ingest.import_paths(db, [tmp_path / "n.txt"])
    fake_engine.queue("x")
    app = MynaApp(engine_factory=lambda settings: fake_engine)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        await pilot.press("ctrl+t")
        assert "memory off" in app.sub_title
        await send(pilot, "What is my cat called?")
        await wait_until(pilot, lambda: not app.replying and len(views(app)) == 2)
    assert fake_engine.prompts[-1][0]["content"] == app.settings.system_prompt


async def test_personalize_screen_shows_runs_and_starts_one(db, fake_engine, myna_home):
    from dataclasses import asdict

    from merger.nightly import runs
    from merger.nightly.config import PersonalizeConfig
    from tui.personalize_screen import PersonalizeScreen

    done = runs.start(db, asdict(PersonalizeConfig()))
    runs.finish(
        db,
        done,
        "published",
        adapters=["a", "b"],
        weights=[0.5, -0.2],
        fitness_before=-3.1,
        fitness_after=-2.9,
        similarity_before=0.3,
        similarity_after=0.45,
        seconds=120.0,
        published="merged",
        message="'merged' is active",
    )
    app = MynaApp(engine_factory=lambda settings: fake_engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonalizeScreen))
        # Nothing installed: it says where community adapters come from before "press s".
        hint = str(app.screen.query_one("#run-phase").render())
        assert "No community adapters yet" in hint and "myna adapters pull" in hint
        await wait_until(pilot, lambda: "s" in {k.key for k in app.screen.query(FooterKey)})
        assert not {"ctrl+n", "f3", "f4"} & {k.key for k in app.screen.query(FooterKey)}
        text = str(app.screen.query_one("#runs").render())
        assert "published  fitness -3.100 → -2.900, similarity to the closest sharer 0.30 → 0.45  (2.0 min)" in text
        assert "a ×+0.50, b ×-0.20" in text
        shipped = PersonalizeConfig()  # the search's size, from the one place it is set
        assert f"search: {shipped.budget} candidates from up to {shipped.max_adapters} community adapters" in text
        await pilot.press("s")  # a real `myna personalize`: with no history it does nothing, and says why
        await wait_until(pilot, lambda: runs.latest(db).id != done and runs.latest(db).status == "skipped")
        await wait_until(pilot, lambda: "no adapter work was done" in str(app.screen.query_one("#runs").render()))
        app.screen.process.wait(600)  # a hang guard: the run has already ended
    assert "no adapter work was done" in (myna_home / "personalize.log").read_text()


async def test_after_a_night_with_nothing_new_the_personalize_screen_offers_to_run_again(
    db, fake_engine, myna_home, base_arch
):
    """A run skipped because nothing changed: the screen says so and `a` starts a real
    `myna personalize --again` (here with no history, so it stops at the cold start)."""
    from merger.formats.lora import random_lora
    from merger.formats.publish import publish
    from merger.nightly import runs
    from tui.personalize_screen import PersonalizeScreen

    publish(db, random_lora(base_arch, rank=2, seed=1), base_arch, stem="shared", kind="community", card={})
    skipped = runs.start(db, {})
    runs.finish(db, skipped, "skipped", message="nothing changed since the run of …", inputs="digest")
    assert runs.latest(db).nothing_changed
    app = MynaApp(engine_factory=lambda settings: fake_engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f4")
        await wait_until(pilot, lambda: isinstance(app.screen, PersonalizeScreen))
        await wait_until(pilot, lambda: "press a to run again" in str(app.screen.query_one("#run-phase").render()))
        await pilot.press("a")
        await wait_until(pilot, lambda: app.screen.process is not None)
        assert app.screen.process.args[-2:] == ["personalize", "--again"]
        await wait_until(pilot, lambda: runs.latest(db).id != skipped and runs.latest(db).status == "skipped")
        assert not runs.latest(db).nothing_changed, "a cold start, not the same inputs"
        await wait_until(pilot, lambda: "press s to start one" in str(app.screen.query_one("#run-phase").render()))
        app.screen.process.wait(600)


async def test_what_a_message_told_is_shown_under_it_and_forgotten_with_one_key(db, fake_engine):
    from assistant.memory import store as memory_store
    from tui.widgets.remembered import RememberedBar

    async with answered(fake_engine, "Puppy food, small and often.", "I just adopted a dog called Biscuit. Food?") as (
        app,
        pilot,
    ):
        bar = app.query_one(RememberedBar)

        def said(bar):
            return " ".join(rendered(label) for label in bar.query("Label"))

        assert "Remembered: you just adopted a dog called Biscuit" in said(bar)
        children = list(app.query_one(ChatView).children)
        assert children.index(bar) == 1, "under the user's message, above the reply"
        [memory] = memory_store.listing(db)
        app.query_one(".forget").focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: "Forgotten." in said(bar))
        assert memory_store.listing(db) == [] and memory.text == "I just adopted a dog called Biscuit."
        # Opened again, a conversation shows what its messages left (here: nothing any more).
        app.open_conversation(app.conversation_id)
        await pilot.pause()
        assert not app.query(RememberedBar)
