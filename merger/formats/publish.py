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
        **({"privacy_audit": result.audit.as_card()} if getattr(result, "audit", None) else {}),
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
    lines += ["", "## Privacy", "", card.get("privacy", "")]
    if card.get("privacy_audit"):
        lines += ["", *_audit_in_words(card["privacy_audit"])]
    elif card.get("kind") in ("personal", "task"):
        lines += ["", "- Membership inference: not measured for this adapter (`myna train` measures it)."]
    lines.append("")
    return "\n".join(lines)


def _audit_in_words(audit: dict) -> list[str]:
    """The membership-inference audit of a trained adapter (merger/data/membership.py), in plain
    words for its data card."""
    excess = audit["auroc"] - audit["reference"]
    if excess <= 2 * audit["chance_spread"]:
        verdict = (
            "within what chance and the base model alone show on this many texts: no measurable sign of which "
            "texts it was trained on (fewer texts make this a weaker assurance)"
        )
    else:
        verdict = (
            "above what chance and the base model alone show: whoever holds the adapter can tell, better than "
            "chance, which of your texts it was trained on"
        )
    return [
        f"- Membership inference (a loss attack: does the adapter find the texts it was trained on easier than "
        f"your other texts?): AUROC **{audit['auroc']:.2f}** on {audit['members']} trained-on texts against {audit['others']} held-out "
        f"ones. The base model alone, on the same texts: {audit['reference']:.2f}. Chance alone moves it by "
        f"±{audit['chance_spread']:.2f} (one standard deviation). 0.5 gives nothing away; 1.0 finds every text.",
        f"- Reading: {verdict}.",
    ]
