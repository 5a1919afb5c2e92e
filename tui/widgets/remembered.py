"""What a message of the user's left in memory, shown under it, each with a button to forget it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import HorizontalGroup, VerticalGroup
from textual.message import Message as TextualMessage
from textual.widgets import Button, Label


class RememberedBar(VerticalGroup):
    """Each line "Remembered: you adopted a dog called Biscuit  [Forget]"; Tab to the
    button and Enter (or a click) forgets that memory."""

    class Forget(TextualMessage):
        def __init__(self, bar: "RememberedBar", memory_id: int) -> None:
            super().__init__()
            self.bar = bar
            self.memory_id = memory_id

    def __init__(self, remembered: list[tuple[int, str]]) -> None:
        """`remembered`: (memory id, what it says, as told back to the user)."""
        super().__init__(classes="remembered")
        self.remembered = remembered

    def compose(self) -> ComposeResult:
        for memory_id, summary in self.remembered:
            with HorizontalGroup(id=f"remembered-{memory_id}", classes="remembered-line"):
                yield Label(f"Remembered: {summary}", markup=False)
                button = Button("Forget", compact=True, flat=True, classes="forget")
                button.memory_id = memory_id
                yield button

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.post_message(self.Forget(self, event.button.memory_id))

    def forgotten(self, memory_id: int) -> None:
        """Show that a memory is gone: its line says so, its button goes."""
        line = self.query_one(f"#remembered-{memory_id}", HorizontalGroup)
        line.query(Button).remove()
        line.query_one(Label).update("Forgotten.")
