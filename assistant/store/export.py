"""A conversation as Markdown or JSON, for `myna history export`."""

from __future__ import annotations

import dataclasses
import json

from assistant.store.conversations import Conversation, Message

_STATUS_NOTE = {"interrupted": "(interrupted)", "failed": "(failed)", "streaming": "(still being written)"}


def to_markdown(conversation: Conversation, messages: list[Message]) -> str:
    lines = [f"# {conversation.title or 'Untitled conversation'}", ""]
    lines.append(f"Conversation {conversation.id}, started {conversation.created_at}.")
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
    return "\n".join(lines).rstrip() + "\n"


def to_json(conversation: Conversation, messages: list[Message]) -> str:
    payload = dataclasses.asdict(conversation)
    payload["messages"] = [dataclasses.asdict(message) for message in messages]
    return json.dumps(payload, ensure_ascii=False, indent=2) + "\n"
