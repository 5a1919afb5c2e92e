"""The memories an answer was given, shown under it; selecting one opens it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import HorizontalGroup
from textual.message import Message as TextualMessage
from textual.widgets import Button, Label

from assistant.memory.store import Snippet


class SourcesBar(HorizontalGroup):
    class Open(TextualMessage):
        def __init__(self, snippet: Snippet) -> None:
            super().__init__()
            self.snippet = snippet  # as the answer was given it: a whole record, or one passage

    def __init__(self, snippets: list[Snippet]) -> None:
        super().__init__(classes="sources")
        self.snippets = snippets

    def compose(self) -> ComposeResult:
        yield Label("Sources:")
        for snippet in self.snippets:
            origin = snippet.origin if len(snippet.origin) <= 32 else snippet.origin[:31] + "…"
            button = Button(f"[{snippet.id}] {origin}", compact=True, flat=True, classes="source")
            button.snippet = snippet
            yield button

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(self.Open(event.button.snippet))
