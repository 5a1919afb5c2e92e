"""Answering a message: record it, build the prompt, stream the reply into the store.

Shared by `myna ask` and the chat app. The reply is saved while it streams, so Ctrl-C,
a cancel, a crash or a kill keeps what was written so far, marked as interrupted.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Protocol, Sequence

import sqlite_utils

from assistant import activity, input_text, tasks
from assistant import adapters as adapter_registry
from assistant import prompt as prompts
from assistant import settings as settings_mod
from assistant.engine import AdapterUse, Completion, SamplingParams
from assistant.errors import MynaError
from assistant.memory import facts, recall, told
from assistant.memory import store as memory_store
from assistant.memory.store import Snippet
from assistant.settings import Settings
from assistant.store import conversations as convs
from assistant.store.transaction import transaction

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
        favoured: Sequence[int] = ...,
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
        copy_bias=settings.memory_copy_bias,
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
    favoured: tuple[int, ...] = ()  # tokens of the notes in the prompt (SamplingParams.copy_bias)
    remembered: tuple[told.Remembered, ...] = ()  # what the user's message left in memory
    known_reply: str | None = None  # the reply, when it is known without the model ("I don't know yet")
    shape: facts.Shape = facts.Shape()  # what the user's standing preferences ask of its form


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

    With memory on (the setting and `use_memory`), what recall finds in the user's history is
    laid out with the message (assistant/prompt.py), as much as the memory budget holds; it
    is dropped again if the message itself needs the room. The reply's sources are exactly
    the memories its prompt holds.
    """
    cleaned = input_text.clean(text)
    text = prompts.check_user_text(cleaned.text, engine.context_size)
    notices = [n for n in (cleaned.notice("your message"), sync_adapter(db, engine)) if n]
    notice = " ".join(notices) or None
    history = history_turns(convs.messages(db, conversation_id)) if conversation_id else []
    known, shape, built, grounded = settle(db, engine, settings, text, history, conversation_id, use_memory)
    said = told.pieces(text) if settings.memory_from_chat == "on" else []
    with transaction(db):  # all of it or none: a failed write leaves no empty conversation
        if conversation_id is None:
            conversation_id = convs.create_conversation(db)
        user_id = convs.add_message(db, conversation_id, "user", text)
        reply_id = record_reply(db, engine, conversation_id, built, grounded)
        memory_ids = told.store(db, user_id, said)
    return Pending(
        conversation_id,
        user_id,
        reply_id,
        built,
        list(grounded.used),
        notice,
        favoured_tokens(engine, grounded.quoted),
        tuple(told.supersede(db, memory_ids)),
        known,
        shape,
    )


def settle(
    db: sqlite_utils.Database,
    engine: ReplyEngine,
    settings: Settings,
    text: str,
    history: list[prompts.Turn],
    conversation_id: int | None,
    use_memory: bool,
) -> tuple[str | None, facts.Shape, prompts.Prompt, prompts.Grounded]:
    """What the reply will be before it is written: known without the model ("I don't know
    yet", and then its prompt, as recorded, holds no memory and none is searched for), the
    form the user's preferences ask of it, and its prompt."""
    known = dont_know(db, settings, text, use_memory)
    built, grounded = build(db, engine, settings, text, history, conversation_id, use_memory and not known)
    shape, built = shaped(engine, text, grounded, built)
    return known, shape, built, grounded


def shaped(
    engine: ReplyEngine, text: str, grounded: prompts.Grounded, built: prompts.Prompt
) -> tuple[facts.Shape, prompts.Prompt]:
    """The form the user's standing preferences ask of this answer, and the prompt that starts
    the reply that way (a list begins with its first "- ")."""
    shape = facts.answer_shape(text, [m.text for m in grounded.used if m.kind == facts.PREFERENCE])
    if not shape.prefix:
        return shape, built
    return shape, replace(built, tokens=[*built.tokens, *engine.tokenize(shape.prefix)])


def not_told(db: sqlite_utils.Database, settings: Settings, text: str) -> bool:
    """Whether `text` asks about the user, their people or things, and nothing they told or
    imported answers it: then Myna says it does not know rather than let the model invent.
    This conversation counts too (its messages are in the prompt, not among the memories);
    a memory given only because it always applies ("I'm vegetarian" to a question about food)
    does not answer anything."""
    if not facts.is_personal_question(text):
        return False
    return not any(not found.standing for found in recall_for(db, settings, text))


def dont_know(db: sqlite_utils.Database, settings: Settings, text: str, use_memory: bool) -> str | None:
    """The honest reply to `text` when nothing remembered answers it (`not_told`), else None."""
    if use_memory and settings.memory == "on" and not_told(db, settings, text):
        return told.dont_know(text)
    return None


def begin_again(
    db: sqlite_utils.Database, engine: ReplyEngine, settings: Settings, conversation_id: int, *, use_memory: bool = True
) -> Pending:
    """Answer a conversation's last message again: the reply to it is replaced by a new empty
    one, to be streamed like any other (the old one's rating and sources go with it). Raises
    MynaError, changing nothing, when there is no message to answer or the user corrected
    the reply (answering again would drop the correction)."""
    messages = convs.messages(db, conversation_id)
    asked = [number for number, message in enumerate(messages) if message.role == "user"]
    if not asked:
        raise MynaError("There is nothing to answer again in this conversation; send a message first.")
    question, replaced = messages[asked[-1]], messages[asked[-1] + 1 :]
    if any(message.correction for message in replaced):
        raise MynaError(
            "You corrected the last reply, and answering again would drop your correction; "
            "send the question again instead."
        )
    notice = sync_adapter(db, engine)
    history = history_turns(messages[: asked[-1]])
    known, shape, built, grounded = settle(db, engine, settings, question.text, history, conversation_id, use_memory)
    with transaction(db):
        convs.delete_messages(db, [message.id for message in replaced])
        reply_id = record_reply(db, engine, conversation_id, built, grounded)
    return Pending(
        conversation_id,
        question.id,
        reply_id,
        built,
        list(grounded.used),
        notice,
        favoured_tokens(engine, grounded.quoted),
        known_reply=known,
        shape=shape,
    )


def settings_for(db: sqlite_utils.Database, settings: Settings, conversation_id: int | None) -> Settings:
    """What a reply in this conversation is written with: its own system prompt and
    temperature, if it has them, over `settings`."""
    if conversation_id is None:
        return settings
    return settings_mod.for_conversation(settings, convs.get_conversation(db, conversation_id))


def build(
    db: sqlite_utils.Database,
    engine: ReplyEngine,
    settings: Settings,
    text: str,
    history: list[prompts.Turn],
    conversation_id: int | None,
    use_memory: bool,
) -> tuple[prompts.Prompt, prompts.Grounded]:
    """The prompt for `text` after `history`, with what memory holds for it when it fits."""
    budget = engine.context_size - prompts.reply_reserve(engine.context_size, settings.max_tokens)
    bare = without_memory(settings, text)
    grounded = bare
    if use_memory and settings.memory == "on":
        grounded = with_memory(db, engine, settings, text, conversation_id)
    try:
        return fit(engine, grounded, history, budget), grounded
    except MynaError:
        if not grounded.used:
            raise
        return fit(engine, bare, history, budget), bare  # the message itself needs the room


def without_memory(settings: Settings, text: str) -> prompts.Grounded:
    return prompts.Grounded(settings.system_prompt, (), text, ())


def record_reply(
    db: sqlite_utils.Database,
    engine: ReplyEngine,
    conversation_id: int,
    built: prompts.Prompt,
    grounded: prompts.Grounded,
) -> int:
    """An empty reply, marked as being written, and the memories its prompt holds."""
    with transaction(db):
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
        memory_store.record_used(db, reply_id, list(grounded.used))
    return reply_id


def favoured_tokens(engine: ReplyEngine, texts: Sequence[str]) -> tuple[int, ...]:
    """The tokens of `texts`, as they appear inside a sentence and at its start."""
    found: set[int] = set()
    for text in texts:
        text = " ".join(text.split())
        found.update(engine.tokenize(text))
        found.update(engine.tokenize(" " + text))
    return tuple(sorted(found))


def one_shot(engine: ReplyEngine, grounded: prompts.Grounded, answer_tokens: int) -> tuple[list[int], tuple[int, ...]]:
    """What the model answers a grounded message from, with no earlier turns: the prompt's
    tokens (an overlong one keeps its start, with the instructions, and its end, where the
    answer begins) and the tokens its notes favour (SamplingParams.copy_bias)."""
    tokens = engine.tokenize_chat(prompts.build_chat(grounded.system, [], grounded.user_text, grounded.demonstrations))
    budget = engine.context_size - answer_tokens - 8
    if len(tokens) > budget:
        tokens = tokens[: budget // 2] + tokens[-budget // 2 :]
    return tokens, favoured_tokens(engine, grounded.quoted)


def fit(engine: ReplyEngine, grounded: prompts.Grounded, history: list[prompts.Turn], budget: int) -> prompts.Prompt:
    return prompts.fit(
        engine.tokenize_chat,
        system=grounded.system,
        history=history,
        user_text=grounded.user_text,
        budget=budget,
        demonstrations=grounded.demonstrations,
    )


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


def recall_for(
    db: sqlite_utils.Database,
    settings: Settings,
    text: str,
    conversation_id: int | None = None,
    exclude: Sequence[int] = (),
) -> list[recall.Recalled]:
    """What memory holds for `text`, by the user's retrieval settings; a task message (a
    headline request, say) is searched by its content, not by the instructions around it."""
    task = tasks.task_of(text)
    return recall.recall(
        db,
        tasks.content_of(text, task) if task else text,
        task=task,
        k=settings.retrieval_top_k,
        mode=settings.retrieval_mode,
        recency=settings.recency_weight,
        min_relevance=settings.memory_min_relevance,
        margin=settings.memory_margin,
        exclude_conversation=conversation_id,
        exclude=exclude,
        told_floor=None if task else settings.memory_told_min_relevance,
    )


def with_memory(
    db: sqlite_utils.Database,
    engine: ReplyEngine,
    settings: Settings,
    text: str,
    conversation_id: int | None = None,
    exclude: Sequence[int] = (),
) -> prompts.Grounded:
    """`text` with what memory holds for it, laid out by the user's settings (RAG); `exclude`:
    snippets never given (the record a held-out example was made from)."""
    found = recall_for(db, settings, text, conversation_id, exclude)
    grounded = prompts.ground(
        settings.system_prompt,
        text,
        [r.memory for r in found],
        layout=settings.memory_layout,
        count_tokens=lambda piece: len(engine.tokenize(piece)),
        budget=settings.memory_budget or engine.context_size // 4,
        preferences=[] if tasks.task_of(text) else told.preferences(db),
    )
    # A note that is there because it always applies ("I'm vegetarian") is not an answer to copy.
    standing = {r.memory.text for r in found if r.standing}
    return replace(grounded, quoted=tuple(q for q in grounded.quoted if q not in standing))


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
    if pending.known_reply is not None:
        return _known(db, pending, on_text)
    written: list[str] = []
    last_save = time.monotonic()
    enough = pending.shape.enough_words
    long_enough = False  # ended here (a short answer long enough, or repeating itself), not cancelled

    def receive(piece: str) -> None:
        nonlocal last_save
        written.append(piece)
        on_text(piece)
        if time.monotonic() - last_save >= SAVE_EVERY_S:
            convs.update_message(db, pending.message_id, text="".join(written), status="streaming")
            last_save = time.monotonic()

    def stop() -> bool:
        nonlocal long_enough
        if should_stop():
            return True
        if written and written[-1].rstrip()[-1:] in ".!?":
            so_far = "".join(written)
            if (enough and len(so_far.split()) >= enough) or repeats_itself(so_far):
                long_enough = True
        return long_enough

    if pending.shape.prefix:
        receive(pending.shape.prefix)
    try:
        with activity.chatting():  # background work steps aside meanwhile (merger/training/background.py)
            done = engine.generate(pending.prompt.tokens, sampling(settings), receive, stop, pending.favoured)
    except BaseException:
        # Ctrl-C (KeyboardInterrupt) or a failure: keep the partial reply, marked as such.
        convs.update_message(db, pending.message_id, text="".join(written), status="interrupted")
        raise
    if long_enough and done.finish == "cancelled":
        done.finish = "stop"
    text = pending.shape.prefix + done.text
    status = "interrupted" if done.finish == "cancelled" else "complete"
    convs.update_message(db, pending.message_id, text=text, status=status, completion_tokens=done.tokens)
    return Reply(
        conversation_id=pending.conversation_id,
        user_message_id=pending.user_message_id,
        message_id=pending.message_id,
        text=text,
        status=status,
        prompt_tokens=len(pending.prompt.tokens),
        completion_tokens=done.tokens,
        dropped_turns=pending.prompt.dropped,
        finish=done.finish,
        sources=pending.sources,
    )


REPEATED_SENTENCE_WORDS = 4


def repeats_itself(text: str) -> bool:
    """Whether the text's last sentence, of a few words at least, was already said in it: the
    small model, given a note, can copy it over and over ("The standup moved to 10:00. The
    standup moved to 10:00. ...") until the token limit; one time is the answer."""
    sentences = [" ".join(s.lower().split()) for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]
    last = sentences[-1] if sentences else ""
    return len(last.split()) >= REPEATED_SENTENCE_WORDS and last in sentences[:-1]


def _known(db: sqlite_utils.Database, pending: Pending, on_text: Callable[[str], None]) -> Reply:
    """A reply known without the model, written as a streamed one would be."""
    text = pending.known_reply or ""
    on_text(text)
    convs.update_message(db, pending.message_id, text=text, status="complete", completion_tokens=0)
    return Reply(
        conversation_id=pending.conversation_id,
        user_message_id=pending.user_message_id,
        message_id=pending.message_id,
        text=text,
        status="complete",
        prompt_tokens=len(pending.prompt.tokens),
        completion_tokens=0,
        dropped_turns=pending.prompt.dropped,
        finish="known",
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
