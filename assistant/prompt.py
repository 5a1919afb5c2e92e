"""The one place that builds prompts: system prompt + conversation, fitted to the context.

Old turns are dropped whole, oldest first, so the model never sees half of a reply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from assistant.errors import MynaError

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


MEMORY_HEADER = "What you know about the user, from their own notes and past conversations (use it only if it helps):"


def memory_line(snippet: "Snippet") -> str:
    return f"[{snippet.id}] ({snippet.date or 'undated'}, {snippet.kind}) {snippet.text}"


def with_memory(
    system: str, snippets: Sequence["Snippet"], count_tokens: Callable[[str], int], budget: int
) -> tuple[str, list["Snippet"]]:
    """The system prompt followed by as many snippets as fit in `budget` tokens, best first;
    returns it with the snippets it holds (the answer's sources)."""
    if not snippets:
        return system, []
    spent = count_tokens(MEMORY_HEADER)
    lines, used = [], []
    for snippet in snippets:
        line = memory_line(snippet)
        cost = count_tokens(line) + 1
        if spent + cost > budget:
            continue  # a shorter one further down may still fit
        lines.append(line)
        used.append(snippet)
        spent += cost
    if not used:
        return system, []
    return "\n\n".join(part for part in (system, MEMORY_HEADER + "\n" + "\n".join(lines)) if part), used


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


def build_chat(system: str, history: Sequence[Turn], user_text: str) -> Chat:
    chat: Chat = [{"role": "system", "content": system}] if system else []
    chat += [{"role": turn.role, "content": turn.text} for turn in history]
    chat.append({"role": "user", "content": user_text})
    return chat


def fit(
    tokenize_chat: Callable[[Chat], list[int]],
    *,
    system: str,
    history: Sequence[Turn],
    user_text: str,
    budget: int,
) -> Prompt:
    """The longest recent part of `history` that fits in `budget` tokens with the new message.

    Cuts are only made where a user turn starts; the cut is found by binary search, so a
    long history costs a few tokenizations, not one per turn.
    """
    cuts = sorted({0, len(history)} | {i for i, turn in enumerate(history) if turn.role == "user"})

    def attempt(cut: int) -> list[int]:
        return tokenize_chat(build_chat(system, history[cut:], user_text))

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
    return Prompt(chat=build_chat(system, history[best_cut:], user_text), tokens=best_tokens, dropped=best_cut)
