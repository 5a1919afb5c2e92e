"""Answers kept from one personalization run to the next.

A night's run has each sharer adapter answer the user's held-out inputs, and the current
adapter answer them in llama.cpp; the next night mostly asks the same adapters the same
inputs (the held-out slice is chosen by hash, so a few new examples change a few of its
inputs), so the answers given before are kept and only new pairs are generated.

An answer is kept under what determines it: which backend generated it, the adapters it had
applied (by their files' content), the prompt's token ids (system prompt and memory
included) and how many tokens it could use. Greedy decoding makes llama.cpp's answer the same
every time; torch's batched answers can differ in the last digits of a score with the batch
they were padded in, which is as close as two of its own runs come.

The file holds what the user's own inputs made, so it lives in the data folder; each run
keeps only what it used, so it stays one night's size.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from assistant.atomic import atomic_write_text
from assistant.hashing import sha256_file


def stack(backend: str, *files: Path | None) -> str:
    """Names a backend with a stack of adapter files applied (None: no adapter there)."""
    parts = [backend]
    for path in files:
        parts.append("-" if path is None else sha256_file(path))
    return "|".join(parts)


def kind(backend) -> str:
    """Names a backend in a stack: its class, and how it decodes when that changes answers
    (a copy bias, scoring.LlamaBackend.decoding)."""
    decoding = getattr(backend, "decoding", "")
    return type(backend).__name__ + (f" ({decoding})" if decoding else "")


class AnswerCache:
    def __init__(self, path: Path, model: str) -> None:
        self.path, self.model = Path(path), model
        try:
            known = json.loads(self.path.read_text())
        except (OSError, ValueError):
            known = {}  # none yet, or a file cut short: answers are made again
        self.known: dict[str, str] = known if isinstance(known, dict) else {}
        self.used: dict[str, str] = {}
        self.made = self.reused = 0

    def _key(self, stack: str, prompt: list[int], tokens: int) -> str:
        text = json.dumps([self.model, stack, tokens, prompt])
        return hashlib.sha256(text.encode()).hexdigest()

    def answers(self, backend, prompts: list[list[int]], tokens: int, stack: str) -> list[str]:
        """What `backend`, holding `stack`, answers to each prompt: kept answers, and the
        others generated (in one call, so torch batches them)."""
        keys = [self._key(stack, prompt, tokens) for prompt in prompts]
        missing = [index for index, key in enumerate(keys) if key not in self.known]
        if missing:
            made = backend.generate([prompts[index] for index in missing], tokens)
            self.known.update({keys[index]: text for index, text in zip(missing, made)})
        self.made += len(missing)
        self.reused += len(keys) - len(missing)
        self.used.update({key: self.known[key] for key in keys})
        return [self.known[key] for key in keys]

    def save(self) -> None:
        """Keep what this run used (atomically: a crash leaves the previous file whole)."""
        atomic_write_text(self.path, json.dumps(self.used))


class Remembered:
    """A backend whose answers go through the cache whenever the adapters it holds have a
    name (`name_of(weights)`: the sharers alone, no sharer; None for a search candidate, whose
    answers are never asked for twice), or were named by `holding` after being set directly.
    Names are `stack`s of the backend's class and the files applied."""

    def __init__(self, backend, cache: AnswerCache, name_of=lambda weights: None) -> None:
        self.backend, self.cache, self.name_of = backend, cache, name_of
        self.stack: str | None = None

    def apply(self, weights) -> None:
        self.backend.apply(weights)
        self.stack = self.name_of(weights)

    def holding(self, *files: Path | None) -> Remembered:
        """Name what was set on the backend directly: these adapter files (None: none)."""
        self.stack = stack(kind(self.backend), *files)
        return self

    def generate(self, prompts: list[list[int]], max_tokens: int) -> list[str]:
        if self.stack is None:
            return self.backend.generate(prompts, max_tokens)
        return self.cache.answers(self.backend, prompts, max_tokens, self.stack)

    def __getattr__(self, attribute):  # the rest (likelihoods, the encoder, closing) as the backend's
        return getattr(self.backend, attribute)
