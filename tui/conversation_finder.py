"""Conversations in the command palette (Ctrl+P), found by title and by their messages' words."""

from __future__ import annotations

from functools import partial

from textual.command import Hit, Hits, Provider
from textual.content import Content

from assistant.store import conversations as convs

SHOWN = 8
# Below the best fuzzy matches of command names (up to 1), so "memory" still puts the
# Memory command first, while a word only a chat holds shows that chat at once.
TOP_SCORE = 0.6


class ConversationFinder(Provider):
    async def search(self, query: str) -> Hits:
        app = self.app
        if self.screen is not app.screen_stack[0] or getattr(app, "db", None) is None:
            return  # the chat's own screen only: the memory and personalize screens have none
        found = [
            f for f in convs.search_conversations(app.db, query, limit=SHOWN + 1) if f.conversation.id != app.hidden_id
        ]
        found = found[:SHOWN]
        for rank, hit in enumerate(found):
            label = f"Open chat: {hit.conversation.title or 'New conversation'}"
            yield Hit(
                TOP_SCORE * (1 - rank / len(found)),
                Content(label),
                partial(app.switch_to, hit.conversation.id),
                text=label,
                help=hit.excerpt or None,
            )
