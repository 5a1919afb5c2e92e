"""The list of conversations on the left of the chat app."""

from __future__ import annotations

from textual.widgets import Label, ListItem, ListView

from assistant.store.conversations import Conversation


def _title(conversation: Conversation) -> str:
    return conversation.title or "New conversation"


class ConversationItem(ListItem):
    def __init__(self, conversation: Conversation) -> None:
        super().__init__(Label(_title(conversation), markup=False))
        self.conversation = conversation

    def becomes(self, conversation: Conversation) -> None:
        self.conversation = conversation
        self.query_one(Label).update(_title(conversation))


class ConversationList(ListView):
    """Most recent first; selecting an item opens that conversation.

    `show` may be called again before the list has caught up with the last call (a reply that
    starts and ends within a frame, a word typed in the find box): removing and mounting items
    from overlapping calls once left an item listed twice. So one update runs at a time, the
    latest wish wins, and items are relabelled in place where the count allows."""

    BORDER_TITLE = "Conversations"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.conversations: list[Conversation] = []  # what is listed, or about to be
        self._wanted: tuple[list[Conversation], int | None] | None = None
        self._updating = False

    @property
    def settled(self) -> bool:
        """Whether the items on screen are the last `show`'s."""
        return not self._updating

    def show(self, conversations: list[Conversation], selected: int | None) -> None:
        self.conversations = list(conversations)
        self._wanted = (self.conversations, selected)
        if not self._updating:
            self._updating = True
            self.run_worker(self._catch_up(), group="conversation-list")

    async def _catch_up(self) -> None:
        try:
            while self._wanted is not None:
                conversations, selected = self._wanted
                self._wanted = None
                items = [child for child in self.children if isinstance(child, ConversationItem)]
                for item, conversation in zip(items, conversations):
                    item.becomes(conversation)
                if len(items) > len(conversations):
                    await self.remove_children(items[len(conversations) :])
                elif len(conversations) > len(items):
                    await self.extend(ConversationItem(conv) for conv in conversations[len(items) :])
                ids = [conv.id for conv in conversations]
                self.index = ids.index(selected) if selected in ids else None
        finally:
            self._updating = False
