"""Rendering a model's Jinja chat template, the way the model was trained to read chats."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

# For a GGUF file without a template: ChatML, the most common convention.
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def choose(catalogue: str | None, embedded: str | None) -> str:
    """The template a model's chats are rendered with, by llama.cpp and by torch alike: the
    model catalogue's when it names one, else the one the model file carries, else ChatML."""
    return catalogue or embedded or CHATML


def render(
    template: str,
    messages: list[dict[str, str]],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
) -> str:
    return _compile(template).render(
        messages=messages,
        bos_token=bos_token,
        eos_token=eos_token,
        add_generation_prompt=add_generation_prompt,
    )


@lru_cache(maxsize=8)
def _compile(template: str):
    # Templates come from model files: render them in a sandbox.
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def _raise(message: str):
    raise ValueError(message)
