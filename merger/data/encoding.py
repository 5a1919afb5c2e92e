"""Examples as token ids, the same for torch (training) and llama.cpp (scoring).

Both models tokenize identically (tests/test_training_real.py checks it); this module only
needs an `Encoder`, which each of them provides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from assistant import prompt as prompts
from merger.data.examples import Example


class Encoder(Protocol):
    end_of_turn: int

    def chat_ids(self, chat: list[dict[str, str]]) -> list[int]: ...

    def text_ids(self, text: str) -> list[int]: ...

    def text_of(self, ids: list[int]) -> str: ...


@dataclass
class Encoded:
    ids: list[int]
    labels: list[int]  # -100 where no loss is taken (the prompt)

    @property
    def prompt(self) -> list[int]:
        return [i for i, label in zip(self.ids, self.labels) if label == -100]

    @property
    def output(self) -> list[int]:
        return [label for label in self.labels if label != -100]


def prompt_chat(system: str, user_text: str) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user_text}]


def encode_example(encoder: Encoder, example: Example, system: str, max_length: int) -> Encoded:
    """Prompt and answer as the model sees them in a chat, with the example's memory laid out
    as chat lays it out, as much of it as fits; the input is shortened (not the instructions
    around it) when the pair alone is longer than `max_length` tokens."""
    output_ids = encoder.text_ids(example.output)[: max_length // 2] + [encoder.end_of_turn]
    prompt = encoder.chat_ids(prompt_chat(system, example.input))
    room = max_length - len(prompt) - len(output_ids)
    if example.memory and room > 0:
        grounded = prompts.ground(
            system,
            example.input,
            example.memory,
            layout=example.layout or "demos",
            count_tokens=lambda text: len(encoder.text_ids(text)),
            budget=room,
        )
        chat = prompts.build_chat(grounded.system, [], grounded.user_text, grounded.demonstrations)
        with_memory = encoder.chat_ids(chat) if grounded.used else []
        if grounded.used and len(with_memory) + len(output_ids) <= max_length:  # pieces counted apart may not add up
            return Encoded(with_memory + output_ids, [-100] * len(with_memory) + output_ids)
    excess = len(prompt) + len(output_ids) - max_length
    if excess > 0:
        input_ids = encoder.text_ids(example.input)
        shorter = encoder.text_of(input_ids[: max(1, len(input_ids) - excess)])
        prompt = encoder.chat_ids(prompt_chat(system, shorter))
    return Encoded(prompt + output_ids, [-100] * len(prompt) + output_ids)
