"""The chat app: conversations on the left, the chat on the right, the model loading behind.

The window is drawn before the model loads (a worker loads it), and each reply is written
by a worker thread; the UI only ever hears about it through messages, so it never freezes.
"""

from __future__ import annotations

import threading
from typing import Callable, Iterable

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import Footer, Header, Input

from assistant import feedback
from assistant import settings as settings_mod
from assistant.errors import MynaError
from assistant.store import conversations as convs
from assistant.store import open_database
from tui.conversation_finder import ConversationFinder
from tui.screens import ChatSettingsScreen, ConfirmScreen, RenameScreen
from tui.widgets.chat_view import ChatView, MessageView, copy_text
from tui.widgets.conversation_list import ConversationList
from tui.widgets.prompt_input import PromptInput
from tui.widgets.remembered import RememberedBar
from tui.widgets.sources import SourcesBar

EngineFactory = Callable[[settings_mod.Settings], object]


def default_engine_factory(model: str | None) -> EngineFactory:
    def load(settings: settings_mod.Settings):
        from assistant.engine import Engine  # llama.cpp is imported off the UI thread

        return Engine.from_settings(settings, model=model)

    return load


# What the chat screen's keys do; other screens have their own.
CHAT_ACTIONS = frozenset(
    {
        "new_conversation",
        "stop_reply",
        "leave",
        "rename",
        "memory",
        "personalize",
        "toggle_memory",
        "delete",
        "regenerate",
        "chat_settings",
        "find_conversation",
        "undo_delete",
    }
)


class MynaApp(App):
    CSS_PATH = "myna.tcss"
    COMMANDS = App.COMMANDS | {ConversationFinder}
    TITLE = "Myna"
    # Below 110 columns the screen is "-narrow": a narrower sidebar, sources one per line.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    BINDINGS = [
        Binding("ctrl+n", "new_conversation", "New"),
        Binding("escape", "stop_reply", "Stop"),  # shown while a reply streams
        Binding("escape", "leave", show=False),  # otherwise: back to the message box
        # Ctrl+C stops a streaming reply, as in a terminal; otherwise it copies as usual.
        Binding("ctrl+c", "interrupt", "Stop reply", show=False, priority=True),
        Binding("f2", "rename", "Rename"),
        Binding("f3", "memory", "Memory"),
        Binding("f4", "personalize", "Personalize"),
        Binding("ctrl+t", "toggle_memory", "Memory on/off", show=False),  # in the palette; the footer is full
        Binding("f8", "delete", "Delete"),
        # In the palette (Ctrl+P) with their keys; the footer keeps room for the ones above.
        Binding("ctrl+r", "regenerate", "Answer again", show=False),
        Binding("ctrl+f", "find_conversation", "Find a chat", show=False),
        Binding("f9", "chat_settings", "Chat settings", show=False),
        # Only while a deleted conversation can come back; otherwise Ctrl+Z undoes typing.
        Binding("ctrl+z", "undo_delete", "Undo delete", show=False, priority=True),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]
    UNDO_SECONDS = 10.0  # how long a deleted conversation can be brought back
    # The footer follows both.
    conversation_id: reactive[int | None] = reactive(None, bindings=True)
    replying: reactive[bool] = reactive(False, bindings=True)

    class ModelReady(Message):
        pass

    class ModelFailed(Message):
        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    class ReplyText(Message):
        def __init__(self, view: MessageView, piece: str) -> None:
            super().__init__()
            self.view = view
            self.piece = piece

    class ReplyStarted(Message):
        def __init__(
            self,
            view: MessageView,
            conversation_id: int,
            message_id: int,
            sources: list,
            notice: str | None = None,
            remembered: list[tuple[int, str]] | None = None,
        ) -> None:
            super().__init__()
            self.notice = notice
            self.view = view
            self.conversation_id = conversation_id
            self.message_id = message_id
            self.sources = sources
            self.remembered = remembered or []  # (memory id, what it says) the user's message left

    class ReplyDone(Message):
        def __init__(self, view: MessageView, status: str) -> None:
            super().__init__()
            self.view = view
            self.status = status

    class ReplyFailed(Message):
        def __init__(self, view: MessageView, text: str | None, error: str, stored: bool) -> None:
            super().__init__()
            self.view = view
            self.text = text
            self.error = error
            self.stored = stored

    def __init__(
        self,
        *,
        model: str | None = None,
        conversation_id: int | None = None,
        new: bool = False,
        engine_factory: EngineFactory | None = None,
    ) -> None:
        super().__init__()
        self.conversation_id = conversation_id
        self._new = new  # start with a blank conversation instead of the last one
        self._theme_restored = False  # until then a theme change is the app's own, not the user's
        self._engine_factory = engine_factory or default_engine_factory(model)
        self.engine = None
        self.engine_error: str | None = None
        self._engine_loaded = threading.Event()
        self._stop = threading.Event()
        self.replying = False
        self.use_memory = True  # Ctrl+T turns retrieval off for this session's next answers
        self._reply_sources: dict[MessageView, list] = {}
        # A deleted conversation, hidden but still stored until the undo time runs out.
        self._pending_delete: tuple[convs.Conversation, Timer] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="sidebar"):
                yield Input(placeholder="Find a chat (Ctrl+F)", id="find", compact=True)
                yield ConversationList(id="conversations")
            with Vertical(id="main"):
                yield ChatView(id="chat")
                yield PromptInput(id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        try:
            self.db = open_database()
            convs.recover_abandoned_replies(self.db)
            self.settings = settings_mod.load(self.db)
            if self.conversation_id is not None:
                convs.get_conversation(self.db, self.conversation_id)
        except MynaError as exc:
            self.exit(return_code=1, message=str(exc))
            return
        if self.settings.theme in self.available_themes:
            self.theme = self.settings.theme
        self._theme_restored = True
        if self.conversation_id is None and not self._new:  # where the user left off
            self.conversation_id = convs.latest_conversation_id(self.db)
        self.update_status()
        self.refresh_conversations()
        if self.conversation_id is None:
            self.open_conversation(None)  # the welcome
        else:
            # Its replies are rendered Markdown, and rich's parser is slow to import: after
            # the first frame, which then comes sooner (bench/speed.py times it).
            self.call_after_refresh(self.open_conversation, self.conversation_id)
        self.query_one("#prompt", PromptInput).focus()
        self.load_model()

    # -- the model -------------------------------------------------------------------------

    @work(thread=True, group="model")
    def load_model(self) -> None:
        try:
            self.engine = self._engine_factory(self.settings)
            if self.settings.memory == "on":
                from assistant.memory import retrieval

                db = open_database()  # a connection of this thread's own
                try:
                    retrieval.warm_up(db)  # the first reply then finds its embedder loaded
                finally:
                    db.conn.close()
        except MynaError as exc:
            self.engine_error = str(exc)
        except Exception as exc:  # a foreign library failing: report it, keep the app usable
            self.engine_error = f"The model could not be loaded ({exc}); try `myna models check`."
        finally:
            self._engine_loaded.set()
        self.post_message(self.ModelFailed(self.engine_error) if self.engine_error else self.ModelReady())

    def watch_theme(self, theme: str) -> None:
        """Keep the theme the user picks (Ctrl+P) for the next start."""
        if self._theme_restored and theme != self.settings.theme:
            settings_mod.set_value(self.db, "theme", theme)
            self.settings = settings_mod.load(self.db)

    def on_myna_app_model_ready(self) -> None:
        self.update_status()

    def update_status(self) -> None:
        model = self.engine.model_name if self.engine else ("no model" if self.engine_error else "loading the model…")
        memory = "memory on" if self.use_memory and self.settings.memory == "on" else "memory off"
        adapter = f"adapter {self.engine.adapter_name}" if self.engine and self.engine.adapter_name else "no adapter"
        self.sub_title = f"{model} · {adapter} · {memory}" if self.engine else model

    def on_myna_app_model_failed(self, message: ModelFailed) -> None:
        self.update_status()
        self.notify(message.error, severity="error", timeout=30)

    # -- conversations ---------------------------------------------------------------------

    def refresh_conversations(self) -> None:
        """The conversation list; only those the find box matches while it holds words."""
        words = self.query_one("#find", Input).value
        if words.strip():
            shown = [found.conversation for found in convs.search_conversations(self.db, words, limit=100)]
        else:
            shown = convs.list_conversations(self.db)
        self.query_one(ConversationList).show([c for c in shown if c.id != self.hidden_id], self.conversation_id)

    @property
    def hidden_id(self) -> int | None:
        """The conversation deleted a moment ago, which lists and searches leave out."""
        return self._pending_delete[0].id if self._pending_delete else None

    @on(Input.Changed, "#find")
    def find_changed(self) -> None:
        self.refresh_conversations()

    @on(Input.Submitted, "#find")
    def find_submitted(self) -> None:
        """Enter opens the best match."""
        listed = self.query_one(ConversationList).conversations
        if not listed:
            self.notify("No conversation has all of those words.")
            return
        self.switch_to(listed[0].id)

    def action_find_conversation(self) -> None:
        self.query_one("#find", Input).focus()

    def open_conversation(self, conversation_id: int | None) -> None:
        self.conversation_id = conversation_id
        messages = convs.messages(self.db, conversation_id) if conversation_id else []
        sources, remembered = {}, {}
        if messages:
            from assistant.memory import store as memory_store
            from assistant.memory import told

            sources = {m.id: memory_store.used_by(self.db, m.id) for m in messages if m.role == "assistant"}
            for m in messages:
                if m.role == "user":
                    left = told.left_by(self.db, m.id)
                    remembered[m.id] = [(s.id, told.Remembered(s).summary) for s in left]
        self.query_one(ChatView).show(messages, sources, remembered)

    @on(ConversationList.Selected, "#conversations")
    def conversation_selected(self, event: ConversationList.Selected) -> None:
        self.switch_to(event.item.conversation.id)

    def switch_to(self, conversation_id: int) -> None:
        if self.replying:
            self.notify("Wait for the reply to finish (or press Escape to stop it) before switching.")
            return
        self.open_conversation(conversation_id)
        self.refresh_conversations()
        self.query_one("#prompt", PromptInput).focus()

    def action_chat_settings(self) -> None:
        """This conversation's own system prompt and temperature (a new one starts now)."""
        if self.replying:
            self.notify("Wait for the reply to finish (or press Escape to stop it).")
            return
        current = convs.get_conversation(self.db, self.conversation_id) if self.conversation_id else None

        def done(chosen: tuple[str | None, float | None] | None) -> None:
            if chosen is None:
                return
            conversation_id = current.id if current else convs.create_conversation(self.db)
            try:
                saved = convs.set_conversation_settings(
                    self.db, conversation_id, system_prompt=chosen[0], temperature=chosen[1]
                )
            except MynaError as exc:
                self.notify(str(exc), severity="error")
                return
            self.open_conversation(conversation_id)
            self.refresh_conversations()
            own = saved.system_prompt is not None or saved.temperature is not None
            self.notify(
                "This conversation has its own settings now."
                if own
                else "This conversation follows your configuration."
            )

        title = f"'{current.title}'" if current and current.title else "this conversation"
        self.push_screen(
            ChatSettingsScreen(
                title,
                current.system_prompt if current else None,
                current.temperature if current else None,
                self.settings,
            ),
            done,
        )

    def action_new_conversation(self) -> None:
        if self.replying:
            self.notify("Wait for the reply to finish (or press Escape to stop it).")
            return
        self.open_conversation(None)
        self.query_one(ConversationList).index = None
        self.query_one("#prompt", PromptInput).focus()

    def action_rename(self) -> None:
        if self.conversation_id is None:
            self.notify("Open a conversation to rename it.")
            return
        current = convs.get_conversation(self.db, self.conversation_id)

        def done(title: str | None) -> None:
            if title:
                convs.rename_conversation(self.db, current.id, title)
                self.refresh_conversations()

        self.push_screen(RenameScreen(current.title), done)

    def action_delete(self) -> None:
        if self.conversation_id is None or self.replying:
            self.notify("Open a conversation (and let its reply finish) to delete it.")
            return
        current = convs.get_conversation(self.db, self.conversation_id)

        def done(yes: bool | None) -> None:
            if yes:
                self.commit_delete()  # only the latest delete can be undone
                self._pending_delete = (current, self.set_timer(self.UNDO_SECONDS, self.commit_delete))
                self.open_conversation(None)
                self.refresh_conversations()
                self.notify(f"Deleted '{current.title}'. Ctrl+Z brings it back.", timeout=self.UNDO_SECONDS)

        self.push_screen(ConfirmScreen(f"Delete '{current.title}' and its {current.message_count} messages?"), done)

    def commit_delete(self) -> None:
        """Delete the hidden conversation for good: when the undo time is up, at the next
        delete, or when the app closes. A killed app leaves it stored: nothing is lost."""
        conversation = self._take_pending_delete()
        if conversation is None:
            return
        try:
            convs.delete_conversation(self.db, conversation.id)
        except MynaError:
            pass  # already gone (deleted from the shell meanwhile)

    def action_undo_delete(self) -> None:
        if self._pending_delete is None or self.replying:
            self.notify("There is no deleted conversation to bring back now.")
            return
        conversation = self._take_pending_delete()
        self.switch_to(conversation.id)
        self.notify(f"Brought back '{conversation.title}'.")

    def _take_pending_delete(self) -> convs.Conversation | None:
        """The hidden conversation, no longer pending (its timer stopped)."""
        if self._pending_delete is None:
            return None
        conversation, timer = self._pending_delete
        self._pending_delete = None
        timer.stop()
        return conversation

    def on_unmount(self) -> None:
        self.commit_delete()

    # -- replies ---------------------------------------------------------------------------

    @on(PromptInput.Submitted, "#prompt")
    def send(self, event: PromptInput.Submitted) -> None:
        text = event.value
        if self.replying:
            self.notify("A reply is still being written; press Escape to stop it.")
            return
        if not text.strip():
            self.notify("Type a message first.")
            return
        if self.engine_error:
            self.notify(self.engine_error, severity="error", timeout=30)
            return
        event.prompt.clear()
        chat = self.query_one(ChatView)
        chat.add(MessageView("user", text))
        view = chat.add(MessageView("assistant", status="streaming"))
        self.replying = True
        self._stop.clear()
        self.write_reply(text, self.conversation_id, view)

    def action_regenerate(self) -> None:
        """Answer the last message again, in place of its reply."""
        if self.replying or self.conversation_id is None:
            self.notify("Open a conversation (and let its reply finish) to answer its last message again.")
            return
        if self.engine_error:
            self.notify(self.engine_error, severity="error", timeout=30)
            return
        chat = self.query_one(ChatView)
        shown = list(chat.query(MessageView))
        if not shown or shown[-1].role != "assistant":
            self.notify("There is no reply to write again here; send a message instead.")
            return
        chat.remove_last_reply()
        view = chat.add(MessageView("assistant", status="streaming"))
        self.replying = True
        self._stop.clear()
        self.write_reply(None, self.conversation_id, view)

    @work(thread=True, group="reply")
    def write_reply(self, text: str | None, conversation_id: int | None, view: MessageView) -> None:
        """Answer `text`, or (None) the conversation's last message again, in place of its reply."""
        from assistant import replies

        self._engine_loaded.wait()
        if self.engine is None:
            self.post_message(self.ReplyFailed(view, text, self.engine_error or "No model is loaded.", False))
            return
        stored = False
        db = open_database()  # a connection of this thread's own
        try:
            settings = replies.settings_for(db, self.settings, conversation_id)
            if text is None:
                pending = replies.begin_again(db, self.engine, settings, conversation_id, use_memory=self.use_memory)
            else:
                pending = replies.begin(
                    db, self.engine, settings, text, conversation_id=conversation_id, use_memory=self.use_memory
                )
            stored = True
            self.post_message(
                self.ReplyStarted(
                    view,
                    pending.conversation_id,
                    pending.message_id,
                    pending.sources,
                    pending.notice,
                    [(r.memory.id, r.summary) for r in pending.remembered],
                )
            )
            reply = replies.stream(
                db,
                self.engine,
                settings,
                pending,
                on_text=lambda piece: self.post_message(self.ReplyText(view, piece)),
                should_stop=self._stop.is_set,
            )
            self.post_message(self.ReplyDone(view, reply.status))
        except MynaError as exc:
            self.post_message(self.ReplyFailed(view, text, str(exc), stored))
        except Exception as exc:
            self.post_message(self.ReplyFailed(view, text, f"The reply failed ({exc}).", stored))
        finally:
            db.conn.close()

    def on_myna_app_reply_text(self, message: ReplyText) -> None:
        message.view.append(message.piece)  # the chat view's anchor follows it, unless the user scrolled up

    def on_myna_app_reply_started(self, message: ReplyStarted) -> None:
        message.view.message_id = message.message_id
        self._reply_sources[message.view] = message.sources
        self.query_one(ChatView).add_remembered(message.view, message.remembered)
        if message.notice:
            self.notify(message.notice, severity="warning", timeout=15)
        if self.conversation_id != message.conversation_id:
            self.conversation_id = message.conversation_id
            self.refresh_conversations()

    def on_myna_app_reply_done(self, message: ReplyDone) -> None:
        message.view.finish(message.status)
        self.update_status()  # the adapter may have changed before this reply
        self.query_one(ChatView).add_sources(message.view, self._reply_sources.pop(message.view, []))
        self.replying = False
        self.refresh_conversations()
        if message.status == "interrupted":
            self.notify("Stopped; the partial reply is kept.")

    def on_myna_app_reply_failed(self, message: ReplyFailed) -> None:
        self.replying = False
        if message.stored:
            message.view.finish("interrupted")
        elif message.text is None:  # answering again changed nothing: show the reply it kept
            self.open_conversation(self.conversation_id)
        else:
            # Nothing was recorded: take the message back into the input so nothing is lost.
            chat = self.query_one(ChatView)
            views = list(chat.query(MessageView))
            for view in views[-2:]:
                view.remove()
            prompt = self.query_one("#prompt", PromptInput)
            prompt.value = message.text
        self.notify(message.error, severity="error", timeout=15)

    def action_interrupt(self) -> None:
        self._stop.set()

    def action_stop_reply(self) -> None:
        self._stop.set()

    def action_leave(self) -> None:
        if isinstance(self.focused, PromptInput):
            self.notify("Press Ctrl+Q to quit.")
            return
        find = self.query_one("#find", Input)
        if self.focused is find and find.value:
            find.value = ""  # the whole list again
        self.query_one("#prompt", PromptInput).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Ctrl+C stops a reply only while one streams (else it copies); the chat's keys only
        work and show on the chat screen (not under F3 or F4), those for the open conversation
        only when one is open (the footer has room for what matters at 80 columns)."""
        if action == "interrupt":
            return self.replying
        if action in CHAT_ACTIONS and self.screen is not self.screen_stack[0]:
            return False
        if action == "stop_reply":
            return self.replying
        if action in ("rename", "delete", "regenerate") and self.conversation_id is None:
            return False
        if action == "regenerate" and self.replying:
            return False
        if action == "undo_delete":
            return self._pending_delete is not None and not self.replying
        return True

    def get_system_commands(self, screen) -> Iterable[SystemCommand]:
        """Myna's own commands in the palette (Ctrl+P), then Textual's (theme, keys, quit)."""
        if screen is self.screen_stack[0]:
            yield SystemCommand("New chat", "Start a new conversation (Ctrl+N)", self.action_new_conversation)
            yield SystemCommand("Rename chat", "Give this conversation a title (F2)", self.action_rename)
            yield SystemCommand("Delete chat", "Delete this conversation, after a question (F8)", self.action_delete)
            if self._pending_delete:
                yield SystemCommand(
                    "Undo delete", f"Bring back '{self._pending_delete[0].title}' (Ctrl+Z)", self.action_undo_delete
                )
            yield SystemCommand("Copy last reply", "Copy the latest reply to the clipboard", self.action_copy_reply)
            yield SystemCommand(
                "Answer again", "Write the last reply again, in its place (Ctrl+R)", self.action_regenerate
            )
            yield SystemCommand(
                "Chat settings",
                "This conversation's own system prompt and temperature (F9)",
                self.action_chat_settings,
            )
            yield SystemCommand(
                "Find a chat", "Search your conversations by title and words (Ctrl+F)", self.action_find_conversation
            )
            yield SystemCommand("Memory", "Search, read and delete what Myna remembers (F3)", self.action_memory)
            yield SystemCommand(
                "Personalize", "Nightly merges of community adapters: runs and progress (F4)", self.action_personalize
            )
            yield SystemCommand(
                "Memory on/off",
                "Answer with or without your memory in this session (Ctrl+T)",
                self.action_toggle_memory,
            )
        yield from super().get_system_commands(screen)

    def action_copy_reply(self) -> None:
        replies = [v for v in self.query_one(ChatView).query(MessageView) if v.role == "assistant"]
        copy_text(self, replies[-1].text if replies else "")

    def action_memory(self) -> None:
        from tui.memory_screen import MemoryScreen

        self.push_screen(MemoryScreen())

    def action_personalize(self) -> None:
        from tui.personalize_screen import PersonalizeScreen

        self.push_screen(PersonalizeScreen())

    def action_toggle_memory(self) -> None:
        self.use_memory = not self.use_memory
        self.update_status()
        if self.settings.memory != "on":
            self.notify("Memory is off in your settings; `myna config set memory on` turns it on.")
        else:
            self.notify("Answers now use your memory." if self.use_memory else "Answers now ignore your memory.")

    @on(RememberedBar.Forget)
    def forget_remembered(self, event: RememberedBar.Forget) -> None:
        """The user forgets what a message of theirs left in memory: it is erased (a memory it
        had replaced is current again)."""
        from assistant.memory import store as memory_store

        if memory_store.get_many(self.db, [event.memory_id]):
            memory_store.delete(self.db, [event.memory_id])
        event.bar.forgotten(event.memory_id)
        self.notify(f"Forgot memory {event.memory_id}.")

    @on(SourcesBar.Open)
    def open_source(self, event: SourcesBar.Open) -> None:
        from assistant.memory import store as memory_store
        from tui.memory_screen import SnippetScreen

        if len(memory_store.get_many(self.db, list(event.snippet.ids))) < len(event.snippet.ids):
            self.notify(f"Memory {event.snippet.id} has been deleted or changed since this answer.", severity="warning")
            return
        self.push_screen(SnippetScreen(event.snippet))

    @on(MessageView.Rated)
    def rate(self, event: MessageView.Rated) -> None:
        feedback.give(self.db, event.view.message_id, rating=event.rating)
        event.view.set_rating(event.rating)
