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
    written = []
    try:
        output.mkdir(mode=0o700, parents=True, exist_ok=True)  # the adapter is personal data
        for name in FILES:
            with atomic_path(output / name) as tmp:  # each file whole or not at all, 0600
                shutil.copyfile(adapter.folder / name, tmp)
            written.append(output / name)
        atomic_write_text(output / "DATA_CARD.md", card_markdown(adapter.name, adapter.card))
    except OSError as exc:
        done = f" (only {', '.join(p.name for p in written)} were written)" if written else ""
        raise MynaError(
            f"Cannot write the adapter to {output} ({exc.strerror}){done}; choose another folder."
        ) from None
    written.append(output / "DATA_CARD.md")
    return written
