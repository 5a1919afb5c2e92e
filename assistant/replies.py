"""Answering a message: record it, build the prompt, stream the reply into the store.

Shared by `myna ask` and the chat app. The reply is saved while it streams, so Ctrl-C,
a cancel, a crash or a kill keeps what was written so far, marked as interrupted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import sqlite_utils

from assistant import prompt as prompts
from assistant import adapters as adapter_registry
from assistant.engine import AdapterUse, Completion, SamplingParams
from assistant.errors import MynaError
from assistant.memory import retrieval
from assistant.memory import store as memory_store
from assistant.memory.store import Snippet
from assistant.settings import Settings
from assistant.store import conversations as convs

SAVE_EVERY_S = 0.5


class ReplyEngine(Protocol):
    """What answering needs from an engine; the real one is assistant.engine.Engine."""

    context_size: int
    model_name: str
    adapter_name: str | None

    fingerprint: str

    def tokenize(self, text: str) -> list[int]: ...

    def set_adapters(self, adapters: Sequence[AdapterUse]) -> None: ...

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
    sources: list[Snippet] = field(default_factory=list)


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
    sources: list[Snippet] = field(default_factory=list)
    notice: str | None = None  # something the user should know about this reply


def begin(
    db: sqlite_utils.Database,
    engine: ReplyEngine,
    settings: Settings,
    text: str,
    *,
    conversation_id: int | None = None,
    use_memory: bool = True,
) -> Pending:
    """Record the user's message and an empty reply; raises MynaError (storing nothing) when
    the message is empty or cannot fit in the context.

    With memory on (the setting and `use_memory`), snippets retrieved from the user's history
    go into the system prompt, as many as the memory budget holds; they are dropped again if
    the message itself needs the room.
    """
    prompts.check_user_text(text, engine.context_size)
    notice = sync_adapter(db, engine)
    history = history_turns(convs.messages(db, conversation_id)) if conversation_id else []
    budget = engine.context_size - prompts.reply_reserve(engine.context_size, settings.max_tokens)
    system, sources = settings.system_prompt, []
    if use_memory and settings.memory == "on":
        system, sources = memory_system_prompt(db, engine, settings, text, conversation_id)
    try:
        built = prompts.fit(engine.tokenize_chat, system=system, history=history, user_text=text, budget=budget)
    except MynaError:
        if not sources:
            raise
        sources = []
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
    memory_store.index_message(db, user_id, text, "user")
    memory_store.record_used(db, reply_id, [snippet.id for snippet in sources])
    return Pending(conversation_id, user_id, reply_id, built, sources, notice)


def sync_adapter(db: sqlite_utils.Database, engine: ReplyEngine) -> str | None:
    """Apply the store's active adapter (a newly published one is picked up here, before the
    next reply). Returns a notice when the active adapter cannot be used with this model."""
    current = adapter_registry.active(db)
    if current is None:
        engine.set_adapters([])
        return None
    if current.base_fingerprint != engine.fingerprint:
        engine.set_adapters([])
        return (
            f"The active adapter '{current.name}' was made for another base model, so this answer "
            f"is without it; switch back to that model or `myna adapters deactivate`."
        )
    engine.set_adapters([AdapterUse(current.gguf, 1.0, current.name)])
    return None


def memory_system_prompt(
    db: sqlite_utils.Database, engine: ReplyEngine, settings: Settings, text: str, conversation_id: int | None = None
) -> tuple[str, list[Snippet]]:
    """The system prompt with the snippets retrieved for `text` (RAG), and those snippets."""
    hits = retrieval.search(
        db,
        text,
        k=settings.retrieval_top_k,
        mode=settings.retrieval_mode,
        recency=settings.recency_weight,
        exclude_conversation=conversation_id,
    )
    budget = settings.memory_budget or engine.context_size // 4
    return prompts.with_memory(
        settings.system_prompt, [hit.snippet for hit in hits], lambda line: len(engine.tokenize(line)), budget
    )


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
    if status == "complete":
        memory_store.index_message(db, pending.message_id, done.text, "assistant")
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
        sources=pending.sources,
    )


def answer(
    db: sqlite_utils.Database,
    engine: ReplyEngine,
    settings: Settings,
    text: str,
    *,
    conversation_id: int | None = None,
    use_memory: bool = True,
    on_text: Callable[[str], None] = lambda piece: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Reply:
    """Answer `text` in a conversation (a new one if None), streaming through `on_text`."""
    pending = begin(db, engine, settings, text, conversation_id=conversation_id, use_memory=use_memory)
    return stream(db, engine, settings, pending, on_text=on_text, should_stop=should_stop)
