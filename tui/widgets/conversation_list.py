"""The list of conversations on the left of the chat app."""

from __future__ import annotations

from textual.widgets import Label, ListItem, ListView

from assistant.store.conversations import Conversation


class ConversationItem(ListItem):
    def __init__(self, conversation: Conversation) -> None:
        super().__init__(Label(conversation.title or "New conversation", markup=False))
        self.conversation = conversation


class ConversationList(ListView):
    """Most recent first; selecting an item opens that conversation."""

    BORDER_TITLE = "Conversations"

    def show(self, conversations: list[Conversation], selected: int | None) -> None:
        self.clear()
        self.extend(ConversationItem(conv) for conv in conversations)
        ids = [conv.id for conv in conversations]
        if selected in ids:
            self.index = ids.index(selected)
