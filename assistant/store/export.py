"""A conversation as Markdown or JSON, for `myna history export`."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

from assistant.memory.store import Snippet
from assistant.store.conversations import Conversation, Message

_STATUS_NOTE = {"interrupted": "(interrupted)", "failed": "(failed)", "streaming": "(still being written)"}


def readable(stamp: str) -> str:
    """A stored UTC timestamp as the user's local date and minute: 2026-11-30 22:21."""
    return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M")


def to_markdown(
    conversation: Conversation, messages: list[Message], sources: dict[int, list[Snippet]] | None = None
) -> str:
    """The conversation as a person would read it; each reply followed by the memories it
    was given (`sources`, by message id)."""
    sources = sources or {}
    lines = [f"# {conversation.title or 'Untitled conversation'}", ""]
    lines.append(f"Conversation {conversation.id}, started {readable(conversation.created_at)}.")
    lines.append("")
    for message in messages:
        heading = "You" if message.role == "user" else message.role.capitalize()
        note = _STATUS_NOTE.get(message.status, "")
        lines.append(f"## {heading} {note}".rstrip())
        lines.append("")
        lines.append(message.text)
        lines.append("")
        if message.correction:
            lines.append("> Corrected by the user:")
            lines.extend(f"> {line}" for line in message.correction.splitlines())
            lines.append("")
        if sources.get(message.id):
            lines.append("Sources:")
            lines.extend(f"- [{s.id}] {s.origin}: {s.preview()}" for s in sources[message.id])
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def to_json(
    conversation: Conversation, messages: list[Message], sources: dict[int, list[Snippet]] | None = None
) -> str:
    sources = sources or {}
    payload = dataclasses.asdict(conversation)
    payload["messages"] = [
        {**dataclasses.asdict(message), "sources": [_source(s) for s in sources.get(message.id, [])]}
        for message in messages
    ]
    return json.dumps(payload, ensure_ascii=False, indent=2) + "\n"


def _source(snippet: Snippet) -> dict:
    return {
        "id": snippet.id,
        "kind": snippet.kind,
        "origin": snippet.origin,
        "date": snippet.date,
        "text": snippet.text,
    }
