"""The memory screen: search what Myna remembers, read, edit and delete it, or forget it all."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Input, Label, ListItem, ListView, Static, TextArea
from textual.worker import get_current_worker

from assistant.memory import retrieval
from assistant.memory import store as memory_store
from assistant.memory.store import Snippet, describe
from assistant.store import open_database
from tui.screens import ConfirmScreen


class SnippetScreen(ModalScreen[str | None]):
    """One memory in full; returns "deleted" or "edited" when it changed."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Close"),
        Binding("e", "edit", "Edit"),
        Binding("d", "delete", "Delete"),
    ]

    def __init__(self, snippet: Snippet) -> None:
        super().__init__()
        self.snippet = snippet

    def compose(self) -> ComposeResult:
        from assistant.memory import told

        with Vertical(classes="dialog wide"):
            yield Label(describe(self.snippet), markup=False)
            yield Static(self.snippet.text, markup=False, id="snippet-text")
            for line in told.lineage(self.app.db, self.snippet):
                yield Label(line, markup=False, classes="hint")
            yield Label("e edit · d delete · Esc close", classes="hint")

    def action_edit(self) -> None:
        def done(text: str | None) -> None:
            if text is not None and text.strip() and text.strip() != self.snippet.text.strip():
                memory_store.edit_memory(self.app.db, self.snippet, text.strip())
                self.dismiss("edited")

        self.app.push_screen(EditScreen(self.snippet.text), done)

    def action_delete(self) -> None:
        def done(yes: bool | None) -> None:
            if yes:
                memory_store.delete(self.app.db, list(self.snippet.ids))
                self.dismiss("deleted")

        self.app.push_screen(ConfirmScreen(f"Delete memory {self.snippet.id}? Its text is erased."), done)


class EditScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("ctrl+s", "save", "Save"), Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("Edit the memory (Ctrl+S saves, Esc cancels):")
            yield TextArea(self.text, id="editor")

    def action_save(self) -> None:
        self.dismiss(self.query_one(TextArea).text)


class SnippetItem(ListItem):
    def __init__(self, snippet: Snippet) -> None:
        text = " ".join(snippet.text.split())
        super().__init__(Label(f"{describe(snippet)}\n  {text[:150]}", markup=False))
        self.snippet = snippet


class MemoryScreen(Screen):
    """Everything remembered; type to search by meaning and keywords."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back to chat"),
        Binding("f9", "forget", "Forget everything"),
    ]

    def compose(self) -> ComposeResult:
        yield Label(
            "Memory: what Myna remembers about you. Type to search; Enter opens the best match.", id="memory-title"
        )
        yield Input(placeholder="Search memories", id="memory-search")
        yield ListView(id="memory-list")
        yield Label("", id="memory-status")
        yield Footer()

    def on_mount(self) -> None:
        self.shown_query = ""  # the query whose results the list shows ("" for the newest)
        self.open_first = False  # Enter was pressed before the results of its query arrived
        self.query_one("#memory-search", Input).focus()
        self.show_recent()

    def show_recent(self) -> None:
        self.show(
            memory_store.listing(self.app.db, limit=200),
            f"{memory_store.count(self.app.db)} memories; the newest first.",
        )

    def show(self, snippets: list[Snippet], status: str, query: str = "") -> None:
        listing = self.query_one("#memory-list", ListView)
        listing.clear()
        listing.extend(SnippetItem(snippet) for snippet in snippets)
        self.query_one("#memory-status", Label).update(status)
        self.shown_query = query
        if self.open_first and query == self.query_one("#memory-search", Input).value:
            self.open_first = False
            if snippets:
                self._open(snippets[0])

    @on(Input.Changed, "#memory-search")
    def search_changed(self, event: Input.Changed) -> None:
        if event.value.strip():
            self.search(event.value)
        else:
            self.show_recent()

    @on(Input.Submitted, "#memory-search")
    def search_submitted(self, event: Input.Submitted) -> None:
        """Enter opens the best match: now if its results are shown, else when they arrive."""
        items = self.query_one("#memory-list", ListView).children
        if event.value == self.shown_query and items:
            self._open(items[0].snippet)
        elif event.value.strip():
            self.open_first = True

    @work(thread=True, exclusive=True, group="memory-search")
    def search(self, query: str) -> None:
        settings = self.app.settings
        db = open_database()  # searching may embed the query: off the UI thread
        try:
            hits = retrieval.find(
                db, query, k=50, mode=settings.retrieval_mode, min_relevance=settings.memory_min_relevance
            )
        finally:
            db.conn.close()
        if not get_current_worker().is_cancelled:  # a newer search replaced this one: its results win
            status = f"{len(hits)} found for '{query}'." if hits else f"Nothing found for '{query}'."
            self.app.call_from_thread(self.show, [hit.snippet for hit in hits], status, query)

    @on(ListView.Selected, "#memory-list")
    def open_snippet(self, event: ListView.Selected) -> None:
        event.stop()
        self._open(event.item.snippet)

    def _open(self, snippet: Snippet) -> None:
        def done(changed: str | None) -> None:
            if changed:
                self.refresh_view()

        self.app.push_screen(SnippetScreen(snippet), done)

    def refresh_view(self) -> None:
        query = self.query_one("#memory-search", Input).value
        if query.strip():
            self.search(query)
        else:
            self.show_recent()

    def action_forget(self) -> None:
        total = memory_store.count(self.app.db)

        def done(yes: bool | None) -> None:
            if yes:
                memory_store.forget_everything(self.app.db)
                self.refresh_view()
                self.app.notify(f"Forgot {total} memories.")

        self.app.push_screen(ConfirmScreen(f"Erase all {total} memories? This cannot be undone."), done)
