"""Exporting an adapter: the only way one leaves Myna, and only when the user asks."""

from __future__ import annotations

import shutil
from pathlib import Path

from assistant.adapters import Adapter
from assistant.atomic import atomic_path, atomic_write_text
from assistant.errors import MynaError
from merger.formats.bridge import PEFT_CONFIG, PEFT_WEIGHTS
from merger.formats.publish import card_markdown

FILES = ("adapter.gguf", PEFT_WEIGHTS, PEFT_CONFIG, "card.json")


def export_adapter(adapter: Adapter, output: Path) -> list[Path]:
    missing = [name for name in FILES if not (adapter.folder / name).is_file()]
    if missing:
        raise MynaError(
            f"Adapter '{adapter.name}' is missing {', '.join(missing)} in {adapter.folder}; train it again."
        )
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MynaError(f"Cannot create {output} ({exc.strerror}); choose another folder.") from None
    written = []
    for name in FILES:
        with atomic_path(output / name) as tmp:
            shutil.copyfile(adapter.folder / name, tmp)
        written.append(output / name)
    atomic_write_text(output / "DATA_CARD.md", card_markdown(adapter.name, adapter.card))
    written.append(output / "DATA_CARD.md")
    return written
