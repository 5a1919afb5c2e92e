"""User settings: typed defaults, overridden by what the user stored with `myna config set`."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields

import sqlite_utils

from assistant import input_text
from assistant.errors import MynaError
from assistant.store.transaction import transaction

# Measured on the default 135M model: naming the assistant and the language keeps it from
# drifting into French, and greedy decoding loops, hence a low temperature instead.
DEFAULT_SYSTEM_PROMPT = "You are a helpful AI assistant named Myna. You answer in English, clearly and briefly."


@dataclass(frozen=True)
class Settings:
    model: str = "smollm2-135m-instruct-q4_1"  # a catalogue name or a path to a GGUF file
    context_size: int = 4096
    max_tokens: int = 512
    temperature: float = 0.2
    top_p: float = 0.9
    repeat_penalty: float = 1.1
    threads: int = 0  # 0: one per physical core
    seed: int = -1  # -1: a new random seed for every reply
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    memory: str = "on"  # retrieve snippets of the user's history for every answer
    retrieval_mode: str = "hybrid"
    retrieval_top_k: int = 4
    memory_budget: int = 0  # tokens of the prompt given to snippets; 0: a quarter of the context
    memory_layout: str = "demos"  # where memory goes in the prompt (assistant/prompt.py)
    memory_min_relevance: float = 0.45  # cosine similarity a memory needs to be given to an answer
    memory_margin: float = 0.1  # ... and how far below the most relevant memory's it may be
    memory_copy_bias: float = 5.0  # how strongly answers favour the words of the notes they are given
    memory_from_chat: str = "on"  # remember the facts and preferences your messages tell (memory/told.py)
    memory_told_min_relevance: float = 0.15  # ... the cut-off for them when they share a word with the message
    recency_weight: float = 0.0
    hub: str = ""  # where community adapters come from: a folder or an http(s) address
    theme: str = "textual-dark"  # the chat app's colours; the app keeps what the user picks (Ctrl+P)


# What each setting means and which values it takes, for `myna config` and validation.
DESCRIPTIONS = {
    "model": "catalogue name (`myna models list`) or path to a GGUF model file",
    "context_size": "tokens the model sees at once, 256 to 131072",
    "max_tokens": "longest reply in tokens, 1 to 32768",
    "temperature": "sampling temperature, 0 (always the likeliest word) to 2",
    "top_p": "nucleus sampling mass, above 0 up to 1",
    "repeat_penalty": "how much to discourage repeating recent tokens, 1 (not at all) to 2",
    "threads": "CPU threads for the model, 0 for one per physical core",
    "seed": "random seed for sampling, -1 for a new one each reply",
    "system_prompt": "the instructions given to the model before every conversation",
    "memory": "on or off: give each answer snippets retrieved from your history and documents",
    "retrieval_mode": "hybrid (keywords and meaning), bm25 (keywords only) or embeddings (meaning only)",
    "retrieval_top_k": "how many snippets to retrieve for an answer, 1 to 50",
    "memory_budget": "prompt tokens for snippets, 0 for a quarter of the context",
    "memory_layout": "where memories go: demos (notes beside your message, task examples as earlier turns), user (notes beside your message) or system (in the system prompt)",
    "memory_min_relevance": "how similar to your message a memory must be to be used, 0 (anything) to 1",
    "memory_margin": "how much less similar than the best memory another may be and still be used, 0 to 1",
    "memory_copy_bias": "how strongly answers favour the words of the notes they are given, 0 (not at all) to 20",
    "memory_from_chat": "on or off: remember what your messages tell about you (facts, preferences) and show it",
    "memory_told_min_relevance": "how similar to your message something you told in chat must be, when they share a word, to be used, 0 to 1",
    "recency_weight": "how much newer snippets are preferred, 0 (not at all) to 1",
    "hub": "the community adapter hub: a folder or an http(s) address (see `myna hub`)",
    "theme": "the chat app's colour theme, one of Textual's (textual-dark, nord, gruvbox, ...)",
}
_CHOICES = {
    "memory": ("on", "off"),
    "memory_from_chat": ("on", "off"),
    "retrieval_mode": ("hybrid", "bm25", "embeddings"),
    "memory_layout": ("demos", "user", "system"),
}
_RANGES = {
    "context_size": (256, 131072),
    "max_tokens": (1, 32768),
    "temperature": (0.0, 2.0),
    "top_p": (1e-6, 1.0),
    "repeat_penalty": (1.0, 2.0),
    "threads": (0, 256),
    "seed": (-1, 2**31 - 1),
    "retrieval_top_k": (1, 50),
    "memory_budget": (0, 65536),
    "recency_weight": (0.0, 1.0),
    "memory_min_relevance": (0.0, 1.0),
    "memory_margin": (0.0, 1.0),
    "memory_told_min_relevance": (0.0, 1.0),
    "memory_copy_bias": (0.0, 20.0),
}


def names() -> list[str]:
    return [f.name for f in fields(Settings)]


_SWITCH = {"on": "on", "true": "on", "yes": "on", "1": "on", "off": "off", "false": "off", "no": "off", "0": "off"}


def check_name(key: str) -> str:
    if key not in names():
        import difflib

        close = difflib.get_close_matches(key, names(), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise MynaError(f"There is no setting '{key}'; {hint}known settings: {', '.join(names())}.")
    return key


def parse(key: str, raw: str) -> object:
    """Convert and check a value typed by the user; raises MynaError naming the problem."""
    check_name(key)
    raw = input_text.text(raw).strip() if key != "system_prompt" else input_text.text(raw)
    if key in ("memory", "memory_from_chat"):
        raw = _SWITCH.get(raw.lower(), raw)
    kind = {f.name: f.type for f in fields(Settings)}[key]
    try:
        value: object = {"int": int, "float": float}.get(kind, str)(raw)
    except ValueError:
        raise MynaError(f"'{raw}' is not a valid {kind} for {key}; expected {DESCRIPTIONS[key]}.") from None
    if key in _RANGES:
        low, high = _RANGES[key]
        if not low <= value <= high:  # type: ignore[operator]
            raise MynaError(f"{key} = {raw} is out of range; expected {DESCRIPTIONS[key]}.")
    if key in _CHOICES and value not in _CHOICES[key]:
        raise MynaError(f"{key} = {raw!r} is not one of {', '.join(_CHOICES[key])}.")
    if isinstance(value, str) and not value.strip():
        raise MynaError(f"{key} cannot be empty; use `myna config unset {key}` to restore the default.")
    if key == "model":
        value = _checked_model(raw)
    if key == "hub":
        value = _checked_hub(raw)
    if key == "theme":
        from textual.theme import BUILTIN_THEMES  # only when a theme is set: textual is the app's

        if raw not in BUILTIN_THEMES:
            raise MynaError(f"theme = {raw!r} is not a theme; choose one of {', '.join(BUILTIN_THEMES)}.")
    return value


def _checked_model(raw: str) -> str:
    """A catalogue name, or the absolute path of a complete GGUF file (checked now, not at
    the next answer)."""
    from assistant import catalogue

    spec = catalogue.resolve(raw)
    catalogue.verify(spec)
    return raw if any(known.name == raw for known in catalogue.manifests()) else str(spec.path)


def _checked_hub(raw: str) -> str:
    from pathlib import Path

    if "://" in raw:
        if not raw.startswith(("http://", "https://")):
            raise MynaError(f"hub = {raw!r}: a hub is an http(s) address or a folder, not {raw.split('://')[0]}://.")
        return raw
    folder = Path(raw).expanduser().resolve()
    if not (folder / "index.json").is_file():
        raise MynaError(
            f"hub = {raw!r}: there is no hub in that folder (no index.json); give a hub's folder or address."
        )
    return str(folder)


def load(db: sqlite_utils.Database) -> Settings:
    stored = {key: json.loads(value) for key, value in db.execute("SELECT key, value FROM settings")}
    known = {key: value for key, value in stored.items() if key in names()}
    return dataclasses.replace(Settings(), **known)


def stored(db: sqlite_utils.Database) -> dict[str, object]:
    """Only the values the user set, not the defaults."""
    return {key: json.loads(value) for key, value in db.execute("SELECT key, value FROM settings") if key in names()}


def set_value(db: sqlite_utils.Database, key: str, raw: str) -> object:
    value = parse(key, raw)
    with transaction(db):
        db.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )
    return value


def unset(db: sqlite_utils.Database, key: str) -> None:
    check_name(key)
    with transaction(db):
        db.execute("DELETE FROM settings WHERE key = ?", (key,))


def with_overrides(settings: Settings, **values: object) -> Settings:
    """`settings` with some values replaced for one command, checked like `myna config set`."""
    checked = {key: parse(key, str(value)) for key, value in values.items() if value is not None}
    return dataclasses.replace(settings, **checked)


def for_conversation(settings: Settings, conversation) -> Settings:
    """The settings a reply in `conversation` (store.conversations.Conversation) is written
    with: its own system prompt and temperature over the configured ones."""
    return with_overrides(settings, system_prompt=conversation.system_prompt, temperature=conversation.temperature)
