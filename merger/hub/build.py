"""`myna hub build`: a hub of community adapters, one per author of a public corpus.

Each author's texts become training examples exactly as an imported LaMP profile would
(merger/data/examples.py), an adapter is trained on them, and the index records its checksum,
base model, shapes, data card and a profile vector (the mean embedding of the author's texts)
that lets a user's merge pick the authors closest to them. The index is rewritten after every
adapter, so an interrupted build continues where it stopped.
"""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from assistant.errors import MynaError
from assistant.hashing import sha256_file
from merger.data.examples import Example, record_example, split
from merger.formats import gguf_lora
from merger.formats.base_model import Architecture
from merger.hub import client as hub
from merger.training.train import TrainConfig, train

Progress = Callable[[str, int, int], None]  # (author, authors done, authors in all)


def author_examples(records: list[tuple[str, str | None, str]]) -> list[Example]:
    return [e for e in (record_example(kind, date, text) for kind, date, text in records) if e is not None]


def profile_vector(texts: list[str]) -> list[float]:
    from assistant.embeddings import embedder

    vectors = embedder().embed(texts[:256])
    mean = vectors.mean(axis=0)
    return [round(float(x), 6) for x in mean / max(np.linalg.norm(mean), 1e-12)]


def build(
    folder: Path,
    authors: dict[str, list[tuple[str, str | None, str]]],
    *,
    base,
    arch: Architecture,
    system: str,
    config: TrainConfig,
    per_author: int = 64,
    license: str = "",
    corpus: str = "",
    hub_name: str = "Myna community hub",
    on_progress: Progress | None = None,
) -> list[hub.Entry]:
    """Train one adapter per author (their first `per_author` texts) into `folder`."""
    folder = Path(folder)
    (folder / "adapters").mkdir(parents=True, exist_ok=True)
    entries = _existing(folder)
    for number, (author, records) in enumerate(sorted(authors.items()), start=1):
        if on_progress:
            on_progress(author, number - 1, len(authors))
        if author in entries and (folder / entries[author].file).is_file():
            continue  # built before an interruption
        examples = author_examples(records)[:per_author]
        if len(examples) < 8:
            raise MynaError(f"'{author}' has {len(examples)} usable texts; a community adapter needs at least 8.")
        with tempfile.TemporaryDirectory(prefix="myna-hub-") as workdir:  # checkpoints, removed when done
            result = train(
                base,
                split(examples, held_out_fraction=0.0),
                config,
                system=system,
                workdir=Path(workdir),
                min_examples=8,
            )
        target = folder / "adapters" / f"{author}.gguf"
        result.lora.metadata = {"author": author}
        gguf_lora.write(result.lora, target, arch)
        dates = sorted(e.date for e in examples if e.date)
        entries[author] = hub.Entry(
            name=author,
            description=f"Writes like {author}: trained on {len(examples)} of its public texts ({corpus}).",
            file=f"adapters/{author}.gguf",
            sha256=sha256_file(target),
            size=target.stat().st_size,
            base_fingerprint=arch.fingerprint,
            rank=result.lora.rank,
            alpha=result.lora.alpha,
            targets=result.lora.modules(),
            license=license,
            data_card={
                "author": author,
                "corpus": corpus,
                "examples": len(examples),
                "by_task": sorted({e.origin for e in examples}),
                "first_date": dates[0] if dates else None,
                "last_date": dates[-1] if dates else None,
                "training": {k: v for k, v in result.config.items() if k != "checkpoint_every"},
                "final_train_loss": result.losses[-1],
                "built": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
            profile_vector=profile_vector([e.output for e in examples]),
        )
        hub.write_index(folder, hub_name, list(entries.values()))
    if on_progress:
        on_progress("", len(authors), len(authors))
    return list(entries.values())


def _existing(folder: Path) -> dict[str, hub.Entry]:
    try:
        data = json.loads((folder / hub.INDEX).read_text())
        return {item["name"]: hub.Entry(**item) for item in data["adapters"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}
