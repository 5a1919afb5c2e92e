"""The conversation itself: one widget per message, the reply growing as it streams."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message as TextualMessage
from textual.widgets import Static

from assistant.memory.store import Snippet
from assistant.store.conversations import Message
from tui.widgets.remembered import RememberedBar
from tui.widgets.sources import SourcesBar

ROLE_LABEL = {"user": "You", "assistant": "Myna"}
STATUS_NOTE = {"interrupted": " (interrupted)", "failed": " (failed)", "streaming": " …"}
RATING_NOTE = {1: "  rated good", -1: "  rated bad", 0: ""}


class MessageView(Static, can_focus=True):
    """A message; replies are shown as Markdown (bold, lists, highlighted code), and can be
    rated with + and - and copied with c when focused."""

    BINDINGS = [
        Binding("plus,equals_sign", "rate(1)", "Rate good"),
        Binding("minus", "rate(-1)", "Rate bad"),
        Binding("c", "copy", "Copy"),
    ]

    class Rated(TextualMessage):
        def __init__(self, view: "MessageView", rating: int) -> None:
            super().__init__()
            self.view = view
            self.rating = rating

    def __init__(
        self,
        role: str,
        text: str = "",
        *,
        message_id: int | None = None,
        status: str = "complete",
        rating: int | None = None,
        corrected: bool = False,
    ) -> None:
        super().__init__(classes=role)
        self.role = role
        self.text = text
        self.message_id = message_id
        self.status = status
        self.rating = rating
        self.corrected = corrected  # the text shown is the user's correction of the reply
        self.border_title = ROLE_LABEL.get(role, role)
        self._refresh_text()

    @classmethod
    def of(cls, message: Message) -> "MessageView":
        return cls(
            message.role,
            message.correction or message.text,
            message_id=message.id,
            status=message.status,
            rating=message.rating,
            corrected=bool(message.correction),
        )

    def append(self, piece: str) -> None:
        self.text += piece
        self._refresh_text()

    def finish(self, status: str, message_id: int | None = None) -> None:
        self.status = status
        if message_id is not None:
            self.message_id = message_id
        self._refresh_text()

    def set_rating(self, rating: int) -> None:
        self.rating = rating
        self._refresh_text()

    def action_copy(self) -> None:
        copy_text(self.app, self.text)

    def action_rate(self, rating: int) -> None:
        if self.role == "assistant" and self.message_id is not None and self.status != "streaming":
            self.post_message(self.Rated(self, rating))

    def _refresh_text(self) -> None:
        note = STATUS_NOTE.get(self.status, "") + RATING_NOTE.get(self.rating, "")
        self.border_subtitle = (note + (", corrected" if self.corrected else "")).strip(" ,")
        shown = self.text or ("…" if self.status == "streaming" else "")
        # What the user typed is shown as typed; a reply is the model's Markdown, rendered.
        if self.role == "assistant" and self.text:
            from rich.markdown import Markdown  # not before the first reply: the first frame waits for imports

            self.update(Markdown(shown, code_theme="monokai"))
        else:
            self.update(Text(shown))


def copy_text(app, text: str) -> None:
    """Put a message on the clipboard (the terminal's, by OSC 52) and say so."""
    if not text:
        app.notify("There is nothing to copy yet.")
        return
    app.copy_to_clipboard(text)
    app.notify(f"Copied {len(text)} characters to the clipboard.")


# Content markup, not Markdown: the welcome is part of the first frame, which should not
# wait for rich's Markdown parser (bench/speed.py times that frame).
WELCOME = """\
[b]Myna learns you, on this machine.[/b] Type a message below and press Enter.

First steps:

1. [b]Give it your notes[/b]: [$accent]myna import ~/notes[/] (text, Markdown, email, JSON). Answers then use them, and list them as sources under the reply.
2. [b]See what it remembers[/b]: F3 opens your memory, to search, read, edit or delete.
3. [b]Let it adapt to you[/b]: rate replies with + and - (Tab to a reply). F4 shows the nightly personalization, which merges community adapters from a hub ([$accent]myna adapters search --hub FOLDER|URL[/]) and trains your own on your history.

Ctrl+P lists every command; nothing you write leaves this machine.
"""


class Welcome(Static):
    """What an empty conversation shows: what Myna does and what to try first."""

    def __init__(self) -> None:
        super().__init__(WELCOME)


class ChatView(VerticalScroll):
    """Messages top to bottom; follows the newest one while a reply streams, unless the user
    has scrolled up to read (Textual's anchor: released by scrolling up, restored at the end)."""

    def on_mount(self) -> None:
        self.anchor()

    def show(
        self,
        messages: list[Message],
        sources: dict[int, list[Snippet]],
        remembered: dict[int, list[tuple[int, str]]] | None = None,
    ) -> None:
        """A conversation's messages, each of the user's followed by what it left in memory,
        each reply by the memories it was given; the welcome when there are none."""
        self.remove_children()
        widgets = [] if messages else [Welcome()]
        for message in messages:
            widgets.append(MessageView.of(message))
            if sources.get(message.id):
                widgets.append(SourcesBar(sources[message.id]))
            if (remembered or {}).get(message.id):
                widgets.append(RememberedBar(remembered[message.id]))
        self.mount_all(widgets)
        self.scroll_end(animate=False)

    def add_sources(self, view: MessageView, snippets: list[Snippet]) -> None:
        if snippets:
            self.mount(SourcesBar(snippets), after=view)

    def add_remembered(self, reply: MessageView, remembered: list[tuple[int, str]]) -> None:
        """What the message before `reply` left in memory, between the two."""
        if remembered:
            self.mount(RememberedBar(remembered), before=reply)

    def remove_last_reply(self) -> None:
        """The last reply and the memories shown under it (it is being written again)."""
        children = list(self.children)
        replies = [
            n for n, child in enumerate(children) if isinstance(child, MessageView) and child.role == "assistant"
        ]
        if replies:
            self.remove_children(children[replies[-1] :])

    def add(self, view: MessageView) -> MessageView:
        self.query(Welcome).remove()
        self.mount(view)
        self.scroll_end(animate=False)
        return view
