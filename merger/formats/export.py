"""Exporting an adapter: the only way one leaves Myna, and only when the user asks."""

from __future__ import annotations

import shutil
from pathlib import Path

from assistant.adapters import Adapter
from assistant.atomic import atomic_path, atomic_write_text
from assistant.errors import MynaError
from merger.formats import elsewhere
from merger.formats.bridge import PEFT_CONFIG, PEFT_WEIGHTS
from merger.formats.publish import card_markdown

FILES = ("adapter.gguf", PEFT_WEIGHTS, PEFT_CONFIG, "card.json")


def export_adapter(adapter: Adapter, output: Path, serving: elsewhere.Serving | None = None) -> list[Path]:
    """The adapter's files, its data card and, given how Myna serves it, what runs it elsewhere
    (an Ollama Modelfile, serve.sh for llama-server, the chat template)."""
    missing = [name for name in FILES if not (adapter.folder / name).is_file()]
    if missing:
        raise MynaError(
            f"Adapter '{adapter.name}' is missing {', '.join(missing)} in {adapter.folder}; train it again."
        )
    written = []
    try:
        output.mkdir(mode=0o700, parents=True, exist_ok=True)  # the adapter is personal data
        for name in FILES:
            with atomic_path(output / name) as tmp:  # each file whole or not at all, 0600
                shutil.copyfile(adapter.folder / name, tmp)
            written.append(output / name)
        card = card_markdown(adapter.name, adapter.card)
        if serving is not None:
            for name, text in _elsewhere(serving).items():
                atomic_write_text(output / name, text)
                written.append(output / name)
            (output / "serve.sh").chmod(0o700)
            card = card.rstrip("\n") + "\n\n" + elsewhere.usage_markdown(serving)
        atomic_write_text(output / "DATA_CARD.md", card)
    except OSError as exc:
        done = f" (only {', '.join(p.name for p in written)} were written)" if written else ""
        raise MynaError(
            f"Cannot write the adapter to {output} ({exc.strerror}){done}; choose another folder."
        ) from None
    written.append(output / "DATA_CARD.md")
    return written


def _elsewhere(serving: elsewhere.Serving) -> dict[str, str]:
    files = {"Modelfile": elsewhere.modelfile(serving), "serve.sh": elsewhere.serve_script(serving)}
    if serving.template:
        files[elsewhere.TEMPLATE_FILE] = serving.template
    return files
