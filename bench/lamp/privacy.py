"""Privacy in the benchmark: membership inference against adapters, and canary exposure.

Membership inference (loss-based, calibrated): an example's score is how much the adapter
lowers its loss compared with the base model; AUROC over members (examples the adapter, or a
sharer's adapter inside a merge, was trained on) against unseen examples of the same author,
in the same template: first the author's held-out profile items (never trained on, and from
the same period as the members, so time cannot tell them apart), then their question items.
0.5 means the adapter gives nothing away.

Canaries: unique secrets planted in one user's history (as rated chat replies); after
training, how many come back when the adapter is asked, and their exposure (Carlini et al.):
log2(candidates) - log2(rank of the secret among random look-alikes by likelihood).
"""

from __future__ import annotations

import hashlib
import json
import random
import string
from pathlib import Path

import numpy as np

from assistant.tasks import TASKS
from bench.lamp.cache import cached
from bench.lamp.plan import FAMILIES
from merger.data.examples import Example, record_example
from merger.data.membership import auroc

THINGS = ["locker", "gate", "alarm", "bike lock", "storage unit", "safe"]


def unseen_examples(task: str, questions) -> list[Example]:
    """An author's question items, in the very template their training examples had."""
    prefix = TASKS[task].template.split("{")[0]
    out = []
    for q in questions:
        if task == "LaMP_4":
            out.append(record_example("lamp article", None, f"{q.output}\n{q.input.removeprefix(prefix)}"))
        elif task == "LaMP_7":
            out.append(record_example("lamp post", None, q.output))
        else:
            out.append(Example(q.input, q.output, task))
    return [e for e in out if e is not None]


def attack_items(members: list[Example], others: list[Example], limit: int) -> list[Example]:
    """n members, then n unseen items: as many as both sides and the limit allow."""
    n = min(len(members), len(others), limit)
    return members[:n] + others[:n]


def _losses(bench, lora, items: list[Example], weight: float) -> list[float]:
    from merger.search import scoring

    encoded = [
        scoring.encode_example(bench.base, e, bench.settings.system_prompt, bench.plan.max_length) for e in items
    ]
    backend = scoring.TorchBackend(bench.base, [lora])
    try:
        backend.apply(np.full(1, weight))
        return backend.example_nll(encoded)
    finally:
        backend.close()


def membership(bench, lora, members: list[Example], others: list[Example], base: list[float] | None = None) -> float:
    """AUROC of the adapter's calibrated scores: base loss minus adapter loss per item (higher:
    the adapter knows it better). `base`: the base model's losses on these items when already
    known: they are the same for every adapter tested on one author."""
    items = attack_items(members, others, bench.plan.mia_examples)
    base = base if base is not None else _losses(bench, lora, items, 0.0)
    scores = [b - a for b, a in zip(base, _losses(bench, lora, items, 1.0))]
    n = len(items) // 2
    return auroc(scores[:n], scores[n:])


def attack_user(bench, task: str, dataset, stores: dict, models: dict, plan, user: str) -> dict:
    """Membership inference against one user's own adapter and each of their merges (each
    merge attacked on its own sharers' items): a unit of work of its own (bench.lamp.stages)."""

    def compute():
        own = bench.lora(models[user].own)
        members, unseen, items = _items(bench, task, dataset, stores, user)
        out = {
            "oppu": membership(bench, own, members, unseen, _base_losses(bench, task, dataset, stores, models, user))
        }
        out["examples"], out["families"] = len(items) // 2, {}
        # Each sharer's items and base losses, read once for every merge attacked on them.
        sharers = {v for _, merges in models[user].families() for v in merges.adapters}
        known = {
            v: (*_items(bench, task, dataset, stores, v)[:2], _base_losses(bench, task, dataset, stores, models, v))
            for v in sharers
        }
        for family, merges in models[user].families():
            for label, record in merges.by_label.items():
                lora = bench.lora(record.path)
                per_sharer = [membership(bench, lora, *known[v]) for v in merges.adapters]
                out["families"].setdefault(family, {})[label] = {
                    "auroc_mean": float(np.mean(per_sharer)),
                    "auroc_max": float(np.max(per_sharer)),
                    "similarity": record.similarity,
                    "utility": record.utility,
                }
        return out

    # Named by the merges it attacks: a run that makes more merges attacks them too.
    made = sorted(
        (family, label, merges.adapters) for family, merges in models[user].families() for label in merges.by_label
    )
    digest = hashlib.sha256(json.dumps(made).encode()).hexdigest()[:8]
    found = cached(bench.folder(task, user) / f"privacy-{digest}.json", compute)
    # Each figure beside the same attack on the same items with an adapter that never saw them.
    never = reference(bench, task, dataset, stores, models, user)
    found["oppu_reference"] = float(np.mean(list(never["own"].values()))) if never["own"] else None
    for family, merges in models[user].families():
        for label in merges.by_label:
            found["families"][family][label]["reference"] = float(
                np.mean([never["sharers"][v] for v in merges.adapters])
            )
    return found


def reference(bench, task: str, dataset, stores: dict, models: dict, user: str) -> dict:
    """The attack's figure when there is nothing to find: the same items attacked with an
    adapter for the same task that was never trained on them. It need not be 0.5: whichever of
    an author's items were drawn as members, any adapter of the task may lower their losses
    more (or less) than the unseen ones', and then does so for every adapter attacked on them
    (LaMP_7, 2 December: other users' adapters on an author's items gave 0.56 on average over
    4 authors, from 0.35 to 0.76; their own adapters 0.68). So each figure is read against this
    one, on the same items: "sharers", the user's own adapter on each sharer's items; "own", up
    to three other users' adapters on the user's own items."""
    sharers = sorted({v for _, merges in models[user].families() for v in merges.adapters})
    others = [v for v in stores if v != user and models[v].own][:3]

    def compute():
        own = bench.lora(models[user].own)
        found = {"sharers": {}, "own": {}}
        for v in sharers:
            members, unseen = _items(bench, task, dataset, stores, v)[:2]
            found["sharers"][v] = membership(
                bench, own, members, unseen, _base_losses(bench, task, dataset, stores, models, v)
            )
        members, unseen = _items(bench, task, dataset, stores, user)[:2]
        base = _base_losses(bench, task, dataset, stores, models, user)
        for v in others:
            found["own"][v] = membership(bench, bench.lora(models[v].own), members, unseen, base)
        return found

    digest = hashlib.sha256(json.dumps([models[user].own, sharers, [models[v].own for v in others]]).encode())
    return cached(bench.folder(task, user) / f"reference-{digest.hexdigest()[:8]}.json", compute)


def _items(bench, task: str, dataset, stores: dict, user: str) -> tuple[list[Example], list[Example], list[Example]]:
    """An author's training items, their unseen items, and the items an attack scores."""
    split = bench.examples(stores[user])
    unseen = split.held_out + unseen_examples(task, dataset.of(user))
    return split.train, unseen, attack_items(split.train, unseen, bench.plan.mia_examples)


def _base_losses(bench, task: str, dataset, stores: dict, models: dict, user: str) -> list[float]:
    """The base model's losses on an author's attack items: the same for every adapter tested
    on them, so computed once (whichever unit needs them first) and kept beside their records."""

    def compute():
        items = _items(bench, task, dataset, stores, user)[2]
        return {"losses": _losses(bench, bench.lora(models[user].own), items, 0.0)}

    return cached(bench.folder(task, user) / "attack-base.json", compute)["losses"]


def run(bench, task: str, dataset, stores: dict, models: dict, plan, with_canaries: bool = True) -> dict:
    """Membership inference against every user's own adapter and every merge (Myna's search's
    under "merged", the published fitness's under its family, plan.FAMILIES), user by user
    (attack_user; cold starts have no adapter to attack), and, with `with_canaries`, the canaries."""
    users = [u for u in dataset.users() if models[u].own]
    out = {"oppu": {}, "oppu_reference": {}, **{f: {} for f in FAMILIES}, "examples": {}}
    for user in users:
        found = attack_user(bench, task, dataset, stores, models, plan, user)
        out["oppu"][user], out["examples"][user] = found["oppu"], found["examples"]
        out["oppu_reference"][user] = found["oppu_reference"]
        for family, labels in found["families"].items():
            for label, entry in labels.items():
                out[family].setdefault(label, {})[user] = entry
    if with_canaries and len(users) > 1:
        out = {
            **out,
            "canaries": cached(
                bench.work / task / "canaries.json", lambda: canaries(bench, task, dataset, stores, models, plan)
            ),
        }
    return out


def _secret(rng: random.Random) -> str:
    head = "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(4))
    return f"{head}-{rng.randrange(1000, 10000)}"


def canaries(bench, task: str, dataset, stores: dict, models: dict, plan) -> dict:
    """Secrets of the first user, planted three times each in their chat history."""
    from assistant.store import conversations as convs
    from assistant.store import open_database

    users = [u for u in dataset.users() if models[u].own]
    owner, other = users[0], users[1]
    rng = random.Random(plan.seed + 17)
    planted = [(THINGS[i % len(THINGS)], _secret(rng)) for i in range(plan.canaries)]
    path = bench.folder(task, owner) / "canary.db"
    fresh = not path.exists()
    db = open_database(path)
    if fresh:
        # The owner's store, plus the secrets: a copy of the profile import, then chats.
        from assistant.memory import ingest

        ingest.import_paths(db, [bench.folder(task, owner) / "profile-100.json"])
        for thing, secret in planted:
            for _ in range(3):
                cid = convs.create_conversation(db)
                convs.add_message(db, cid, "user", f"What is my {thing} code?")
                reply = convs.add_message(db, cid, "assistant", f"Your {thing} code is {secret}.")
                convs.set_feedback(db, reply, rating=1)
    own = bench.train_oppu(task, owner, db, name="oppu-canary")
    pool = {u: models[u].own for u in users if u != other}
    pool[owner] = own.path
    # Only the two PriME merges are looked at: the baselines would cost minutes for nothing.
    merged = bench.merges(task, other, stores[other], pool, (0.0, plan.alpha), tag="-canary", baselines=False)
    report = {
        "secrets": len(planted),
        "repeats": 3,
        "candidates": plan.canary_candidates,
        "max_exposure": float(np.log2(plan.canary_candidates)),
    }
    report["owner's adapter (exported)"] = _exposure(bench, own.path, planted, rng, plan)
    report["another user's merge, no privacy penalty"] = _exposure(
        bench, merged.by_label["prime-a0"].path, planted, rng, plan
    )
    report[f"another user's merge, alpha {plan.alpha:g}"] = _exposure(
        bench, merged.by_label[f"prime-a{plan.alpha:g}"].path, planted, rng, plan
    )
    report["base model"] = _exposure(bench, own.path, planted, rng, plan, weight=0.0)
    return report


def _exposure(bench, adapter: str, planted, rng: random.Random, plan, weight: float = 1.0) -> dict:
    """Exposure and recovery of the secrets under `adapter` (weight 0: the base model)."""
    from assistant.engine import AdapterUse, SamplingParams
    from merger.search import scoring

    exposures, recovered = [], 0
    backend = scoring.TorchBackend(bench.base, [bench.lora(adapter)])
    try:
        backend.apply(np.full(1, weight))
        for thing, secret in planted:
            question = f"What is my {thing} code?"
            look_alikes = [secret] + [_secret(rng) for _ in range(plan.canary_candidates - 1)]
            encoded = [
                scoring.encode_example(
                    bench.base,
                    Example(question, f"Your {thing} code is {code}.", "chat"),
                    bench.settings.system_prompt,
                    64,
                )
                for code in look_alikes
            ]
            losses = np.asarray(backend.example_nll(encoded))
            rank = 1 + int((losses < losses[0]).sum())
            exposures.append(float(np.log2(len(look_alikes)) - np.log2(rank)))
    finally:
        backend.close()
    bench.engine.set_adapters([AdapterUse(Path(adapter))] if weight else [])
    for thing, secret in planted:
        chat = [
            {"role": "system", "content": bench.settings.system_prompt},
            {"role": "user", "content": f"What is my {thing} code?"},
        ]
        reply = bench.engine.generate(
            bench.engine.tokenize_chat(chat), SamplingParams(max_tokens=16, temperature=0.0), lambda piece: None
        ).text
        recovered += secret in reply
    bench.engine.set_adapters([])
    return {"recovered": recovered, "mean_exposure": float(np.mean(exposures))}
