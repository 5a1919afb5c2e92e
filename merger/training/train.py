"""Training the user's own LoRA adapter with PEFT (the OPPU method).

The loss covers the output tokens only (the LM head runs at those positions alone, which
also saves most of its cost). Batches hold examples of similar length, in an order fixed by
the seed, so a run is reproducible and can resume exactly from a checkpoint. Checkpoints are
safetensors + JSON (never pickle): the LoRA weights, AdamW's moments and the step reached.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from assistant.atomic import atomic_path, atomic_write_text
from assistant.errors import MynaError
from merger.data import membership as audit_
from merger.data.encoding import Encoded, encode_example
from merger.data.examples import MIN_TRAIN, ExampleSet, require_enough
from merger.formats.base_model import HF_NAMES
from merger.formats.lora import Lora, key
from merger.training import background
from merger.training.config import TrainConfig
from merger.training.torch_model import TorchBase

StepCallback = Callable[[int, int, float], None]  # (step, total steps, loss)


@dataclass
class TrainResult:
    lora: Lora
    steps: int
    total_steps: int
    losses: list[float]
    held_out_before: float | None  # mean negative log-likelihood per output token
    held_out_after: float | None
    tokens: int
    seconds: float  # all of it, with scoring the held-out slice before and after
    step_seconds: float = 0.0  # the optimization steps alone
    resumed_from: int = 0
    config: dict = field(default_factory=dict)
    audit: audit_.Audit | None = None  # membership inference on the user's own items (the data card's)


class TrainingStopped(MynaError):
    pass


# Peak memory measured on this machine kind (bench/training.py): about 0.8 GB for the base
# model and the optimizer, plus ~2.2 MB per token in a batch for the activations kept for
# the backward pass. A margin is kept on top of that.
BASE_BYTES = 1.0e9
BYTES_PER_TOKEN = 2.8e6


def bf16_native() -> bool:
    """Whether this CPU has bfloat16 instructions (measured: a training step 1.6x faster,
    same losses to 0.01, on the 2-core AVX-512 BF16 machine kind)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def uses_bf16(config: TrainConfig) -> bool:
    return config.precision == "bf16" or (config.precision == "auto" and bf16_native())


def micro_batch_size(config: TrainConfig, available: float | None = None) -> int:
    """The largest batch that fits in free memory (the rest of a batch is accumulated)."""
    import psutil

    available = psutil.virtual_memory().available if available is None else available
    fits = int((available - BASE_BYTES) // (config.max_length * BYTES_PER_TOKEN))
    if fits < 1:
        need = (BASE_BYTES + config.max_length * BYTES_PER_TOKEN) / 2**30
        raise MynaError(
            f"Training needs about {need:.1f} GiB of free memory and {available / 2**30:.1f} GiB is free; "
            "close other programs or lower --max-length."
        )
    return min(config.batch_size, fits)


def batch_order(encoded: list[Encoded], batch_size: int, epochs: int, seed: int) -> list[list[int]]:
    """All batches of all epochs, fixed by the seed: similar lengths together, batches shuffled."""
    rng = random.Random(seed)
    order = []
    for _ in range(epochs):
        indices = list(range(len(encoded)))
        rng.shuffle(indices)
        indices.sort(key=lambda i: len(encoded[i].ids))  # stable: shuffled within equal lengths
        chunks = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
        rng.shuffle(chunks)
        order.extend(chunks)
    return order


def _tensors(encoded: list[Encoded], pad: int):
    import torch

    width = max(len(e.ids) for e in encoded)
    ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    labels = torch.full((len(encoded), width), -100, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, e in enumerate(encoded):
        ids[row, : len(e.ids)] = torch.tensor(e.ids)
        labels[row, : len(e.labels)] = torch.tensor(e.labels)
        mask[row, : len(e.ids)] = 1
    return ids, labels, mask


def _output_logits(model, encoded: list[Encoded], pad: int):
    """Logits at the output tokens only (the prompt's logits are never computed: 1.65-1.76x faster,
    bench/training.py), their targets, and which (row, position) each came from."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    ids, labels, mask = _tensors(encoded, pad)
    hidden = inner.model(input_ids=ids, attention_mask=mask).last_hidden_state
    targets = labels[:, 1:]
    chosen = targets != -100
    return inner.lm_head(hidden[:, :-1][chosen]).float(), targets[chosen], chosen


def output_loss(model, encoded: list[Encoded], pad: int, reduction: str = "mean"):
    """Cross-entropy of the output tokens; `model` is a (PEFT-wrapped) causal LM."""
    import torch.nn.functional as F

    logits, targets, chosen = _output_logits(model, encoded, pad)
    return F.cross_entropy(logits, targets, reduction=reduction), int(chosen.sum())


def example_losses(model, encoded: list[Encoded], pad: int) -> list[float]:
    """Mean cross-entropy per output token of each example, for a whole batch in one pass
    (padding is on the right, so it changes nothing before it)."""
    import torch
    import torch.nn.functional as F

    logits, targets, chosen = _output_logits(model, encoded, pad)
    per_token = F.cross_entropy(logits, targets, reduction="none")
    sums = torch.zeros(len(encoded)).index_add_(0, chosen.nonzero()[:, 0], per_token)
    return (sums / chosen.sum(dim=1).clamp(min=1)).tolist()


def _audit(model, train_set: list[Encoded], held_out: list[Encoded], pad: int) -> audit_.Audit | None:
    """The loss attack on what was trained on against what was held out, with the adapter and
    with the base model alone (PEFT's adapter switched off: no second model in memory)."""
    import torch

    if not train_set or not held_out:
        return None
    members, others = audit_.spread(train_set), audit_.spread(held_out)

    def losses(items: list[Encoded]) -> list[float]:
        return [x for start in range(0, len(items), 8) for x in example_losses(model, items[start : start + 8], pad)]

    with torch.no_grad():
        mine = (losses(members), losses(others))
        with model.disable_adapter():
            base = (losses(members), losses(others))
    return audit_.measure(base, mine)


def mean_nll(model, encoded: list[Encoded], pad: int, batch_size: int = 8) -> float | None:
    """Mean negative log-likelihood per output token over `encoded` (lower is better)."""
    import torch

    if not encoded:
        return None
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            loss, n = output_loss(model, encoded[start : start + batch_size], pad, reduction="sum")
            total += float(loss)
            count += n
    return total / max(count, 1)


def lora_from_peft_model(model, config: TrainConfig, base_fingerprint: str) -> Lora:
    inner = model.get_base_model()
    weights = {}
    for layer_number, layer in enumerate(inner.model.layers):
        for module in config.targets:
            part, projection = HF_NAMES[module].split(".")
            linear = getattr(getattr(layer, part), projection)
            a = linear.lora_A["default"].weight.detach().cpu().numpy().astype(np.float32)
            b = linear.lora_B["default"].weight.detach().cpu().numpy().astype(np.float32)
            weights[key(layer_number, module)] = (a, b)
    return Lora(rank=config.rank, alpha=config.alpha, weights=weights, base_fingerprint=base_fingerprint)


def _load_lora_into(model, lora: Lora, config: TrainConfig) -> None:
    """Start from an existing adapter (OPPU's task-level PEFT): copy its matrices in."""
    import torch

    if lora.rank != config.rank or set(lora.modules()) != set(config.targets):
        raise MynaError(
            f"the starting adapter has rank {lora.rank} on {', '.join(lora.modules())}; "
            f"train with the same rank and targets (--rank {lora.rank})."
        )
    inner = model.get_base_model()
    with torch.no_grad():
        for name, (a, b) in lora.weights.items():
            _, layer, module = name.split(".")
            part, projection = HF_NAMES[module].split(".")
            linear = getattr(getattr(inner.model.layers[int(layer)], part), projection)
            linear.lora_A["default"].weight.copy_(torch.from_numpy(a))
            linear.lora_B["default"].weight.copy_(torch.from_numpy(b))


def run_key(base: TorchBase, examples: ExampleSet, config: TrainConfig, system: str, start: Lora | None) -> str:
    """What identifies a training run: a checkpoint is only resumed by the same run."""
    digest = hashlib.sha256()
    digest.update(base.fingerprint.encode())
    digest.update(json.dumps(asdict(config), sort_keys=True).encode())
    digest.update(system.encode())
    for example in examples.train:
        digest.update(example.key.encode())
    if start is not None:
        for name in sorted(start.weights):
            digest.update(name.encode() + start.weights[name][0].tobytes()[:64])
    return digest.hexdigest()[:20]


def train(
    base: TorchBase,
    examples: ExampleSet,
    config: TrainConfig,
    *,
    system: str,
    workdir: Path,
    start_from: Lora | None = None,
    on_step: StepCallback | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    min_examples: int = MIN_TRAIN,
) -> TrainResult:
    """Train a LoRA adapter on `examples.train`; checkpoints go to `workdir`."""
    import torch
    from peft import LoraConfig, get_peft_model

    config.check()
    require_enough(examples, min_examples)
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    pad = base.tokenizer.pad_token_id if base.tokenizer.pad_token_id is not None else base.end_of_turn
    train_set = [encode_example(base, e, system, config.max_length) for e in examples.train]
    held_out = [encode_example(base, e, system, config.max_length) for e in examples.held_out]

    for parameter in base.model.parameters():
        parameter.requires_grad_(False)
    peft_config = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        target_modules=sorted({HF_NAMES[m].split(".")[-1] for m in config.targets}),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base.model, peft_config)
    try:
        if start_from is not None:
            _load_lora_into(model, start_from, config)
        before = mean_nll(model, held_out, pad)
        trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
        optimizer = torch.optim.AdamW(trainable.values(), lr=config.learning_rate, weight_decay=0.0)
        order = batch_order(train_set, config.batch_size, config.epochs, config.seed)
        micro = micro_batch_size(config)
        bf16 = uses_bf16(config)
        step_seconds = 0.0
        key_ = run_key(base, examples, config, system, start_from)
        step, losses = _resume(workdir, key_, trainable, optimizer)
        resumed_from = step
        tokens = 0
        model.train()
        while step < len(order):
            background.step_aside()  # one thread while a chat replies
            if should_stop():
                _checkpoint(workdir, key_, step, losses, trainable, optimizer)
                raise TrainingStopped(
                    f"Training stopped at step {step} of {len(order)}; run `myna train` again to continue from there."
                )
            batch = [train_set[i] for i in order[step]]
            step_started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            # The batch's mean loss over its output tokens, accumulated micro-batch by micro-batch.
            outputs = sum(sum(1 for label in e.labels[1:] if label != -100) for e in batch)
            loss_sum = 0.0
            for start in range(0, len(batch), micro):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    part_sum, _ = output_loss(model, batch[start : start + micro], pad, reduction="sum")
                (part_sum / outputs).backward()
                loss_sum += part_sum.item()
            optimizer.step()
            step_seconds += time.perf_counter() - step_started
            loss_value = loss_sum / outputs
            step += 1
            tokens += sum(len(e.ids) for e in batch)
            losses.append(loss_value)
            if not math.isfinite(losses[-1]):
                raise MynaError("Training diverged (the loss is not a number); lower the learning rate and try again.")
            if on_step:
                on_step(step, len(order), losses[-1])
            if step % config.checkpoint_every == 0 and step < len(order):
                _checkpoint(workdir, key_, step, losses, trainable, optimizer)
        model.eval()
        after = mean_nll(model, held_out, pad)
        audit = _audit(model, train_set, held_out, pad)
        lora = lora_from_peft_model(model, config, base.fingerprint)
    finally:
        model.unload()  # give the base model back without the LoRA layers
    return TrainResult(
        lora=lora,
        steps=len(order) - resumed_from,
        total_steps=len(order),
        losses=losses,
        held_out_before=before,
        held_out_after=after,
        tokens=tokens,
        seconds=time.perf_counter() - started,
        step_seconds=step_seconds,
        resumed_from=resumed_from,
        config={**asdict(config), "precision": "bf16" if bf16 else "fp32"},
        audit=audit,
    )


def _checkpoint(workdir: Path, run: str, step: int, losses: list[float], trainable: dict, optimizer) -> None:
    from safetensors.torch import save_file

    tensors = {}
    state = optimizer.state
    adam_steps = {}
    for name, parameter in trainable.items():
        tensors[f"param/{name}"] = parameter.detach().contiguous()
        if parameter in state:
            tensors[f"exp_avg/{name}"] = state[parameter]["exp_avg"].contiguous()
            tensors[f"exp_avg_sq/{name}"] = state[parameter]["exp_avg_sq"].contiguous()
            adam_steps[name] = float(state[parameter]["step"])
    workdir.mkdir(parents=True, exist_ok=True)
    with atomic_path(workdir / "checkpoint.safetensors") as tmp:
        save_file(tensors, str(tmp))
    # The JSON goes last: a checkpoint counts only once its description names it complete.
    atomic_write_text(
        workdir / "checkpoint.json", json.dumps({"run": run, "step": step, "losses": losses, "adam_steps": adam_steps})
    )


def _resume(workdir: Path, run: str, trainable: dict, optimizer) -> tuple[int, list[float]]:
    import torch
    from safetensors.torch import load_file

    meta_file, tensor_file = workdir / "checkpoint.json", workdir / "checkpoint.safetensors"
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError):
        return 0, []
    if meta.get("run") != run or not tensor_file.is_file():
        return 0, []
    tensors = load_file(str(tensor_file))
    with torch.no_grad():
        for name, parameter in trainable.items():
            parameter.copy_(tensors[f"param/{name}"])
            if f"exp_avg/{name}" in tensors:
                optimizer.state[parameter] = {
                    "step": torch.tensor(meta["adam_steps"][name]),
                    "exp_avg": tensors[f"exp_avg/{name}"].clone(),
                    "exp_avg_sq": tensors[f"exp_avg_sq/{name}"].clone(),
                }
    return int(meta["step"]), list(meta["losses"])


def clear_checkpoint(workdir: Path) -> None:
    for name in ("checkpoint.json", "checkpoint.safetensors"):
        (workdir / name).unlink(missing_ok=True)
