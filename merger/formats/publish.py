"""Publishing an adapter: its files complete on disk first, then one transaction makes it
known (and active). A crash at any point leaves the previous adapter active and intact."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone

import sqlite_utils

from assistant import adapters, paths
from assistant.atomic import atomic_write_text
from merger.formats import bridge, gguf_lora
from merger.formats.base_model import Architecture
from merger.formats.lora import Lora


def publish(
    db: sqlite_utils.Database,
    lora: Lora,
    arch: Architecture,
    *,
    stem: str,
    kind: str,
    card: dict,
    activate: bool = True,
    reason: str = "",
) -> adapters.Adapter:
    name = adapters.unique_name(db, stem)
    final = paths.subdir("adapters") / name
    partial = final.with_name(name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    if final.exists():
        shutil.rmtree(final)  # files of a publish that died before registering: not in use
    partial.mkdir(parents=True)
    gguf_lora.write(lora, partial / adapters.GGUF_NAME, arch)
    bridge.write_peft(lora, partial)
    atomic_write_text(partial / "card.json", json.dumps(card, indent=2) + "\n")
    partial.rename(final)
    return adapters.register(
        db,
        name=name,
        kind=kind,
        folder=final,
        base_fingerprint=arch.fingerprint,
        rank=lora.rank,
        alpha=lora.alpha,
        targets=lora.modules(),
        card=card,
        activate=activate,
        reason=reason,
    )


def card_for_training(result, examples, base_name: str, fingerprint: str, system: str) -> dict:
    """The data card of a trained adapter: what it is, what went into it (counts, never text)."""
    summary = examples.summary()
    return {
        "kind": "personal",
        "method": "LoRA trained on the user's own history (OPPU)",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "base_model": {"name": base_name, "fingerprint": fingerprint},
        "lora": {
            "rank": result.config["rank"],
            "alpha": result.config["alpha"],
            "targets": list(result.config["targets"]),
        },
        "training": {
            **result.config,
            "steps": result.total_steps,
            "seconds": round(result.seconds, 1),
            "tokens": result.tokens,
            "system_prompt": system,
        },
        "data": summary,
        "metrics": {
            "held_out_nll_before": result.held_out_before,
            "held_out_nll_after": result.held_out_after,
            "final_train_loss": result.losses[-1] if result.losses else None,
        },
        "privacy": "Trained on the personal data counted above. An adapter can reveal what it was trained on: "
        "share it only with people you would show that data to.",
    }


def card_markdown(name: str, card: dict) -> str:
    data = card.get("data", {})
    metrics = card.get("metrics", {})
    lines = [
        f"# Data card: {name}",
        "",
        f"- Kind: {card.get('kind', '?')} ({card.get('method', '')})",
        f"- Created: {card.get('created', '?')}",
        f"- Base model: {card.get('base_model', {}).get('name', '?')} "
        f"(sha256 {card.get('base_model', {}).get('fingerprint', '?')})",
        f"- LoRA: rank {card.get('lora', {}).get('rank')}, alpha {card.get('lora', {}).get('alpha')}, "
        f"on {', '.join(card.get('lora', {}).get('targets', []))}",
        "",
        "## What personal data went into it",
        "",
        f"- Training examples: {data.get('examples_train', '?')}; held out for scoring: {data.get('examples_held_out', '?')}",
    ]
    for origin, count in sorted(data.get("by_origin", {}).items()):
        lines.append(f"  - {origin}: {count}")
    if data.get("first_date"):
        lines.append(f"- Dates of that data: {data['first_date']} to {data['last_date']}")
    if card.get("merge"):
        merge = card["merge"]
        lines += [
            "",
            "## Merge",
            "",
            f"- Community adapters: {', '.join(merge.get('adapters', []))}",
            f"- Weights: {merge.get('weights')}",
        ]
    lines += ["", "## Metrics", ""]
    lines += [f"- {name_}: {value}" for name_, value in metrics.items()]
    lines += ["", "## Privacy", "", card.get("privacy", ""), ""]
    return "\n".join(lines)
