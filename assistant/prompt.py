"""The one place that builds prompts: system prompt, memory, conversation, fitted to the context.

Memory (what recall found for the message) goes where the layout says, and each record in
the form that suits it:

- "system": every record as a line under a header in the system prompt (Myna's first layout,
  kept as the baseline the others are measured against);
- "user": the records quoted as the user's notes, in the user's turn right before the
  message, where a small model reads them;
- "demos": like "user", except that records belonging to the task the message asks for (an
  article and its headline, for a headline request) become earlier turns of the chat that
  show the task done: the record's input as a user turn, its output as the reply.

Which is the default was decided by measurement (docs/benchmarks.md, "Fact recall"). Chat,
`myna ask`, training, merge scoring and the benchmark all build their prompts here.

Old turns are dropped whole, oldest first, so the model never sees half of a reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Callable, Sequence

from assistant import records, tasks
from assistant.errors import MynaError
from assistant.memory.facts import FACT

if TYPE_CHECKING:
    from assistant.memory.store import Snippet

Chat = list[dict[str, str]]
MAX_CHARS_PER_TOKEN = 32  # no tokenizer packs more into one token; lets us reject huge input cheaply


@dataclass(frozen=True)
class Turn:
    role: str  # "user" or "assistant"
    text: str


@dataclass(frozen=True)
class Prompt:
    chat: Chat
    tokens: list[int]
    dropped: int  # history messages left out to fit the context


LAYOUTS = ("system", "user", "demos")
MEMORY_HEADER = "What you know about the user, from their own notes and past conversations (use it only if it helps):"
NOTES_HEADER = "My notes:"
# Where the user's standing preferences about answers go ("keep your answers short"): measured
# on the conversation benchmark (docs/conversation-memory.md).
PREFERENCES_HEADER = "How the user wants every answer:"
PREFERENCES_ASKED = "How I want the answer:"
PREFERENCES_IN = "system"  # or "user": after the message, in the user's turn
# A demonstration shows the form of an answer; the start of its input is enough for that.
DEMO_INPUT_WORDS = 120


@dataclass(frozen=True)
class Grounded:
    """A message with its memory laid out: what build_chat needs, and what it holds."""

    system: str
    demonstrations: tuple[Turn, ...]  # earlier turns showing the task done ("demos" layout)
    user_text: str  # the message, with notes beside it ("user" and "demos" layouts)
    used: tuple["Snippet", ...]  # exactly the memories in the prompt, best first: the sources
    quoted: tuple[str, ...] = ()  # the texts given as notes (what an answer may copy from)


def memory_line(snippet: "Snippet") -> str:
    return f"[{snippet.id}] ({snippet.date or 'undated'}, {snippet.kind}) {snippet.text}"


def note(snippet: "Snippet") -> str:
    return '- "' + " ".join(snippet.text.split()) + '"' + said_on(snippet)


def said_on(snippet: "Snippet") -> str:
    """When the user said it, for what they told in chat: the newest of two notes is current."""
    if snippet.message_id is None or snippet.kind != FACT or not snippet.date:
        return ""
    try:
        day = date.fromisoformat(snippet.date[:10])
    except ValueError:
        return ""
    shown = f"{day.day} {day:%b}" + ("" if day.year == date.today().year else f" {day.year}")
    return f" (said on {shown})"


def demonstration(pair: records.Pair) -> tuple[Turn, Turn]:
    words = pair.input.split()
    shown = pair.input if len(words) <= DEMO_INPUT_WORDS else " ".join(words[:DEMO_INPUT_WORDS]) + " ..."
    return Turn("user", shown), Turn("assistant", pair.output)


def ground(
    system: str,
    message: str,
    memories: Sequence["Snippet"],
    *,
    layout: str,
    count_tokens: Callable[[str], int],
    budget: int,
    preferences: Sequence["Snippet"] = (),
) -> Grounded:
    """`message` with as many of `memories` (best first) as fit in `budget` tokens, laid out
    as `layout` says, and the user's standing `preferences` about answers in the system
    prompt, whatever the message (they count among the memories used)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown memory layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    task = tasks.task_of(message) if layout == "demos" else None
    header = MEMORY_HEADER if layout == "system" else NOTES_HEADER
    spent = count_tokens(header) + 2
    notes: list[str] = []
    quoted: list[str] = []
    demos: list[tuple[Turn, Turn]] = []
    used = []
    for memory in memories:
        pair = records.demonstration_of(memory.kind, memory.text, task)
        if pair is not None:
            shown = demonstration(pair)
            cost = sum(count_tokens(turn.text) + 4 for turn in shown)
        else:
            pair, line = None, (memory_line(memory) if layout == "system" else note(memory))
            cost = count_tokens(line) + 1
        if spent + cost > budget:
            continue  # a shorter one further down may still fit
        spent += cost
        used.append(memory)
        if pair is not None:
            demos.append(shown)
        else:
            notes.append(line)
            quoted.append(memory.text)
    wishes: list[str] = []
    for preference in preferences:
        line = note(preference)
        cost = count_tokens(line) + 1
        if spent + cost > budget:
            continue
        spent += cost
        used.append(preference)
        wishes.append(line)
    if wishes and PREFERENCES_IN == "system":
        system = "\n\n".join(part for part in (system, PREFERENCES_HEADER + "\n" + "\n".join(wishes)) if part)
    user_text = message
    if wishes and PREFERENCES_IN == "user":
        user_text = f"{message}\n\n{PREFERENCES_ASKED}\n" + "\n".join(wishes)
    if notes and layout == "system":
        system = "\n\n".join(part for part in (system, header + "\n" + "\n".join(notes)) if part)
    elif notes:
        user_text = f"{header}\n" + "\n".join(notes) + f"\n\n{user_text}"
    # The best demonstration last, nearest the message.
    turns = tuple(turn for shown in reversed(demos) for turn in shown)
    return Grounded(system, turns, user_text, tuple(used), tuple(quoted))


def reply_reserve(context_size: int, max_tokens: int) -> int:
    """Tokens kept free for the reply: what the user allows, but never more than half."""
    return max(1, min(max_tokens, context_size // 2))


def check_user_text(text: str, context_size: int) -> str:
    if not text or not text.strip():
        raise MynaError('There is nothing to answer: type a question, e.g. myna ask "What is a LoRA adapter?".')
    if len(text) > context_size * MAX_CHARS_PER_TOKEN:
        raise MynaError(
            f"Your message is {len(text):,} characters, far more than the model's context of "
            f"{context_size:,} tokens can hold; shorten it, or import long documents with `myna import`."
        )
    return text


def build_chat(system: str, history: Sequence[Turn], user_text: str, demonstrations: Sequence[Turn] = ()) -> Chat:
    chat: Chat = [{"role": "system", "content": system}] if system else []
    chat += [{"role": turn.role, "content": turn.text} for turn in (*demonstrations, *history)]
    chat.append({"role": "user", "content": user_text})
    return chat


def fit(
    tokenize_chat: Callable[[Chat], list[int]],
    *,
    system: str,
    history: Sequence[Turn],
    user_text: str,
    budget: int,
    demonstrations: Sequence[Turn] = (),
) -> Prompt:
    """The longest recent part of `history` that fits in `budget` tokens with the new message.

    Cuts are only made where a user turn starts; the cut is found by binary search, so a
    long history costs a few tokenizations, not one per turn.
    """
    cuts = sorted({0, len(history)} | {i for i, turn in enumerate(history) if turn.role == "user"})

    def attempt(cut: int) -> list[int]:
        return tokenize_chat(build_chat(system, history[cut:], user_text, demonstrations))

    lowest = attempt(cuts[-1])
    if len(lowest) > budget:
        raise MynaError(
            f"Your message is about {len(lowest):,} tokens with the instructions, but only {budget:,} fit "
            "with room for a reply; shorten it or raise context_size with `myna config set context_size N`."
        )
    best_cut, best_tokens = cuts[-1], lowest
    lo, hi = 0, len(cuts) - 2  # search the cuts that keep some history
    while lo <= hi:
        mid = (lo + hi) // 2
        tokens = attempt(cuts[mid])
        if len(tokens) <= budget:
            best_cut, best_tokens = cuts[mid], tokens
            hi = mid - 1
        else:
            lo = mid + 1
    return Prompt(
        chat=build_chat(system, history[best_cut:], user_text, demonstrations), tokens=best_tokens, dropped=best_cut
    )
