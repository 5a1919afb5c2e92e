"""Small dialogs: confirm a deletion, rename a conversation."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, TextArea


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("escape", "dismiss(False)", "Cancel"), Binding("y", "dismiss(True)", "Yes")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("Cancel (Esc)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # Enter alone must not destroy anything

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class RenameScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str) -> None:
        super().__init__()
        self.current = title

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("New title (Enter to save, Esc to cancel):")
            yield Input(value=self.current, id="title")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)


class ChatSettingsScreen(ModalScreen[tuple[str | None, float | None] | None]):
    """A conversation's own system prompt and temperature; returns them (None: follow the
    configuration), or None when cancelled."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str, system_prompt: str | None, temperature: float | None, configured) -> None:
        super().__init__()
        self.chat_title, self.configured = title, configured
        self.system_prompt, self.temperature = system_prompt, temperature

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(f"Settings of {self.chat_title}: its replies are written with these.", markup=False)
            yield Label("System prompt (the instructions the model gets before the conversation):")
            yield TextArea(self.system_prompt or self.configured.system_prompt, id="system", soft_wrap=True)
            yield Label(f"Temperature, 0 (always the likeliest word) to 2; empty: {self.configured.temperature:g}:")
            yield Input(
                value="" if self.temperature is None else f"{self.temperature:g}",
                placeholder=f"{self.configured.temperature:g}",
                id="temperature",
            )
            yield Label("", id="settings-error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Save", id="save", variant="primary")
                yield Button("Use the configured ones", id="reset")
                yield Button("Cancel (Esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        from assistant import settings as settings_mod
        from assistant.errors import MynaError

        if event.button.id == "cancel":
            self.dismiss(None)
        elif event.button.id == "reset":
            self.dismiss((None, None))
        else:
            system = self.query_one("#system", TextArea).text
            raw = self.query_one("#temperature", Input).value.strip()
            try:
                temperature = settings_mod.parse("temperature", raw) if raw else None
            except MynaError as exc:
                self.query_one("#settings-error", Label).update(str(exc))
                return
            self.dismiss((system if system.strip() else None, temperature))
