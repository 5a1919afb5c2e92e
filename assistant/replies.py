"""Answering a message: record it, build the prompt, stream the reply into the store.

Shared by `myna ask` and the chat app. The reply is saved while it streams, so Ctrl-C,
a cancel, a crash or a kill keeps what was written so far, marked as interrupted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import sqlite_utils

from assistant import prompt as prompts
from assistant.engine import Completion, SamplingParams
from assistant.settings import Settings
from assistant.store import conversations as convs

SAVE_EVERY_S = 0.5


class ReplyEngine(Protocol):
    """What answering needs from an engine; the real one is assistant.engine.Engine."""

    context_size: int
    model_name: str
    adapter_name: str | None

    def tokenize_chat(self, chat: prompts.Chat) -> list[int]: ...

    def generate(
        self,
        prompt: Sequence[int],
        params: SamplingParams,
        on_text: Callable[[str], None],
        should_stop: Callable[[], bool] = ...,
    ) -> Completion: ...


@dataclass(frozen=True)
class Reply:
    conversation_id: int
    user_message_id: int
    message_id: int
    text: str
    status: str  # complete | interrupted
    prompt_tokens: int
    completion_tokens: int
    dropped_turns: int
    finish: str


def history_turns(messages: Sequence[convs.Message]) -> list[prompts.Turn]:
    """What the model should remember of a conversation: the user's corrections win."""
    turns = []
    for message in messages:
        if message.role not in ("user", "assistant") or message.status == "failed":
            continue
        text = message.correction or message.text
        if text.strip():
            turns.append(prompts.Turn(message.role, text))
    return turns


def sampling(settings: Settings) -> SamplingParams:
    return SamplingParams(
        max_tokens=settings.max_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        repeat_penalty=settings.repeat_penalty,
        seed=settings.seed,
    )


@dataclass(frozen=True)
class Pending:
    """A reply that has been recorded but not yet written."""

    conversation_id: int
    user_message_id: int
    message_id: int
    prompt: prompts.Prompt


def begin(
    db: sqlite_utils.Database,
    engine: ReplyEngine,
    settings: Settings,
    text: str,
    *,
    conversation_id: int | None = None,
) -> Pending:
    """Record the user's message and an empty reply; raises MynaError (storing nothing) when
    the message is empty or cannot fit in the context."""
    prompts.check_user_text(text, engine.context_size)
    history = history_turns(convs.messages(db, conversation_id)) if conversation_id else []
    budget = engine.context_size - prompts.reply_reserve(engine.context_size, settings.max_tokens)
    built = prompts.fit(
        engine.tokenize_chat, system=settings.system_prompt, history=history, user_text=text, budget=budget
    )
    if conversation_id is None:
        conversation_id = convs.create_conversation(db)
    user_id = convs.add_message(db, conversation_id, "user", text)
    reply_id = convs.add_message(
        db,
        conversation_id,
        "assistant",
        "",
        status="streaming",
        model=engine.model_name,
        adapter=engine.adapter_name,
        prompt_tokens=len(built.tokens),
    )
    return Pending(conversation_id, user_id, reply_id, built)


def stream(
    db: sqlite_utils.Database,
    engine: ReplyEngine,
    settings: Settings,
    pending: Pending,
    *,
    on_text: Callable[[str], None] = lambda piece: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Reply:
    """Write the reply, saving it as it grows; a cancel or Ctrl-C leaves it 'interrupted'."""
    written: list[str] = []
    last_save = time.monotonic()

    def receive(piece: str) -> None:
        nonlocal last_save
        written.append(piece)
        on_text(piece)
        if time.monotonic() - last_save >= SAVE_EVERY_S:
            convs.update_message(db, pending.message_id, text="".join(written), status="streaming")
            last_save = time.monotonic()

    try:
        done = engine.generate(pending.prompt.tokens, sampling(settings), receive, should_stop)
    except BaseException:
        # Ctrl-C (KeyboardInterrupt) or a failure: keep the partial reply, marked as such.
        convs.update_message(db, pending.message_id, text="".join(written), status="interrupted")
        raise
    status = "interrupted" if done.finish == "cancelled" else "complete"
    convs.update_message(db, pending.message_id, text=done.text, status=status, completion_tokens=done.tokens)
    return Reply(
        conversation_id=pending.conversation_id,
        user_message_id=pending.user_message_id,
        message_id=pending.message_id,
        text=done.text,
        status=status,
        prompt_tokens=len(pending.prompt.tokens),
        completion_tokens=done.tokens,
        dropped_turns=pending.prompt.dropped,
        finish=done.finish,
    )


def answer(
    db: sqlite_utils.Database,
    engine: ReplyEngine,
    settings: Settings,
    text: str,
    *,
    conversation_id: int | None = None,
    on_text: Callable[[str], None] = lambda piece: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Reply:
    """Answer `text` in a conversation (a new one if None), streaming through `on_text`."""
    pending = begin(db, engine, settings, text, conversation_id=conversation_id)
    return stream(db, engine, settings, pending, on_text=on_text, should_stop=should_stop)
