"""A fake engine for fast unit tests: replies are queued by the test, tokens are words.

Every component also has tests against the real engine (see test_engine_real.py and the
tests marked `real`).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

from assistant.engine import Completion, SamplingParams


@dataclass
class FakeEngine:
    replies: deque[str] = field(default_factory=deque)
    context_size: int = 512
    model_name: str = "fake-model"
    adapter_name: str | None = None
    piece_delay: threading.Event | None = None  # when set, waits on each piece (for cancel tests)
    fail_after: int | None = None  # raise this exception after N pieces
    failure: BaseException | None = None
    prompts: list[list[dict[str, str]]] = field(default_factory=list)
    fingerprint: str = "fake-fingerprint"
    adapters: list = field(default_factory=list)
    favoured: list[list[int]] = field(default_factory=list)  # what each generate() was asked to favour
    params: list[SamplingParams] = field(default_factory=list)  # how each generate() was asked to sample

    def set_adapters(self, adapters) -> None:
        self.adapters = list(adapters)
        self.adapter_name = "+".join(a.label or a.path.name for a in adapters) or None

    def queue(self, *texts: str) -> "FakeEngine":
        self.replies.extend(texts)
        return self

    def tokenize(self, text: str) -> list[int]:
        return list(range(len(text.split())))

    def tokenize_chat(self, chat: list[dict[str, str]]) -> list[int]:
        self.prompts.append(chat)
        words = sum(len(message["content"].split()) + 3 for message in chat)
        return list(range(words))

    def generate(
        self,
        prompt: Sequence[int],
        params: SamplingParams,
        on_text: Callable[[str], None],
        should_stop: Callable[[], bool] = lambda: False,
        favoured: Sequence[int] = (),
    ) -> Completion:
        self.favoured.append(list(favoured))
        self.params.append(params)
        text = self.replies.popleft() if self.replies else "(no reply queued)"
        done = Completion(finish="stop")
        for index, word in enumerate(text.split(" ")):
            if self.fail_after is not None and index == self.fail_after:
                raise self.failure or RuntimeError("engine failure")
            if self.piece_delay is not None:
                self.piece_delay.wait(0.05)
            piece = word if index == 0 else " " + word
            done.text += piece
            done.tokens += 1
            on_text(piece)
            if done.tokens >= params.max_tokens:
                done.finish = "length"
                break
            if should_stop():
                done.finish = "cancelled"
                break
        return done
