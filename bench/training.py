"""Training the personal adapter: throughput, time, peak memory, conversion to GGUF.

    python -m bench training [--examples 200] [--epochs 2]

Examples are real: news articles -> their headlines (the LaMP_4 template), 256 tokens at most.
The main run happens in a child process so its peak memory is its own. Baselines in the same
run: the per-step cost with all 7 projections adapted, and with the usual loss that computes
the LM head at every position instead of only at the output tokens.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

from bench.common import run_measured, save, table

WORKER = """
import json, sys, time
from bench.training import worker
print(json.dumps(worker(int(sys.argv[1]), int(sys.argv[2]))))
"""


def article_examples(n: int):
    from assistant.tasks import prompt
    from merger.data import corpora as data
    from merger.data.examples import Example

    chosen = [a for a in data.articles() if len(a.text.split()) > 250][:n]
    return [Example(prompt("LaMP_4", text=a.text), a.title, "lamp article", a.date) for a in chosen]


def worker(n_examples: int, epochs: int) -> dict:
    """The measured run (in the child process)."""
    from pathlib import Path

    from assistant.catalogue import resolve
    from assistant.settings import Settings
    from merger.data.encoding import encode_example
    from merger.data.examples import split
    from merger.formats import bridge, gguf_lora
    from merger.formats.base_model import architecture
    from merger.training import torch_model
    from merger.training import train as trainer

    spec = resolve(Settings().model)
    start = time.perf_counter()
    base = torch_model.load(spec)
    load_seconds = time.perf_counter() - start
    example_set = split(article_examples(n_examples + 10), held_out_fraction=10 / (n_examples + 10))
    config = trainer.TrainConfig(rank=8, epochs=epochs, max_length=256, batch_size=4)
    encoded = [encode_example(base, e, Settings().system_prompt, 256) for e in example_set.train]
    result = trainer.train(
        base, example_set, config, system=Settings().system_prompt, workdir=Path(tempfile.mkdtemp()), min_examples=1
    )
    arch = architecture(spec)
    folder = Path(tempfile.mkdtemp())
    start = time.perf_counter()
    gguf_lora.write(result.lora, folder / "adapter.gguf", arch)
    bridge.write_peft(result.lora, folder)
    convert_seconds = time.perf_counter() - start
    start = time.perf_counter()
    bridge.load(folder / "adapter.gguf", arch)
    read_seconds = time.perf_counter() - start
    return {
        "examples": len(example_set.train),
        "mean_tokens": sum(len(e.ids) for e in encoded) / len(encoded),
        "epochs": epochs,
        "steps": result.total_steps,
        "train_seconds": result.seconds,
        "step_seconds": result.step_seconds,
        "precision": result.config["precision"],
        "tokens": result.tokens,
        "base_load_seconds": load_seconds,
        "held_out_before": result.held_out_before,
        "held_out_after": result.held_out_after,
        "convert_seconds": convert_seconds,
        "read_back_seconds": read_seconds,
    }


def step_costs(steps: int = 4) -> dict:
    """Seconds per step of 4 x 256-token examples: default, all 7 projections, full logits."""
    import torch
    from peft import LoraConfig, get_peft_model

    from assistant.catalogue import resolve
    from assistant.settings import Settings
    from merger.data.encoding import encode_example
    from merger.formats.base_model import HF_NAMES
    from merger.training import torch_model
    from merger.training import train as trainer

    base = torch_model.load(resolve(Settings().model))
    encoded = [encode_example(base, e, "", 256) for e in article_examples(steps * 4)]
    pad = base.end_of_turn

    def per_step(targets, full_logits=False, bf16=True):
        model = get_peft_model(
            base.model,
            LoraConfig(
                r=8,
                lora_alpha=16,
                lora_dropout=0.0,
                target_modules=sorted({HF_NAMES[t].split(".")[-1] for t in targets}),
            ),
        )
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        times = []
        for i in range(steps + 1):  # the first step warms up and is not counted
            batch = encoded[(i % steps) * 4 : (i % steps + 1) * 4]
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                if full_logits:
                    ids, labels, mask = trainer._tensors(batch, pad)
                    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                else:
                    loss, _ = trainer.output_loss(model, batch, pad)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
        model.unload()
        return sorted(times[1:])[len(times[1:]) // 2]

    bf16 = trainer.bf16_native()
    forward = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for i in range(steps):
            ids, _, mask = trainer._tensors(encoded[i * 4 : (i + 1) * 4], pad)
            start = time.perf_counter()
            base.model.model(input_ids=ids, attention_mask=mask)
            forward.append(time.perf_counter() - start)
    return {
        "step_default_s": per_step(("attn_q", "attn_v"), bf16=bf16),
        "step_fp32_s": per_step(("attn_q", "attn_v"), bf16=False),
        "step_all7_s": per_step(tuple(HF_NAMES), bf16=bf16),
        "step_full_logits_s": per_step(("attn_q", "attn_v"), full_logits=True, bf16=bf16),
        "forward_only_s": sorted(forward)[len(forward) // 2],
    }


def run(n_examples: int, epochs: int) -> dict:
    os.environ.setdefault("MYNA_HOME", tempfile.mkdtemp(prefix="myna-bench-training-"))
    from assistant.catalogue import resolve
    from assistant.settings import Settings
    from merger.training import torch_model

    torch_model.load(resolve(Settings().model))  # build the converted-model cache outside the timed run
    measured = run_measured(
        [sys.executable, "-c", WORKER, str(n_examples), str(epochs)], env=dict(os.environ), timeout=3600
    )
    figures = json.loads(measured["stdout"].strip().splitlines()[-1])
    figures["peak_mib"] = measured["peak_mib"]
    figures["wall_seconds"] = measured["wall_s"]
    figures.update(step_costs())
    return figures


def report(f: dict) -> str:
    return table(
        [
            (
                f"train {f['examples']} examples x {f['epochs']} epochs, rank 8 on q, v",
                f"{f['train_seconds'] / 60:.1f} min",
                f"mean {f['mean_tokens']:.0f} tokens per example, {f['precision']}; with held-out scoring; target < 10 min",
            ),
            (
                "throughput of the steps",
                f"{f['examples'] * f['epochs'] / f['step_seconds']:.2f} examples/s",
                f"{f['tokens'] / f['step_seconds']:.0f} tokens/s",
            ),
            ("peak memory of the whole run", f"{f['peak_mib'] / 1024:.2f} GiB", "target < 4 GiB"),
            (
                "held-out loss per output token",
                f"{f['held_out_before']:.2f} -> {f['held_out_after']:.2f}",
                "headline generation",
            ),
            (
                "loading the base model for torch (cached)",
                f"{f['base_load_seconds']:.1f} s",
                "first time: conversion from GGUF",
            ),
            (
                "adapter -> GGUF + PEFT files",
                f"{f['convert_seconds'] * 1000:.0f} ms",
                f"reading back and checking: {f['read_back_seconds'] * 1000:.0f} ms",
            ),
            (
                "one step (4 x 256 tokens), default",
                f"{f['step_default_s']:.2f} s",
                f"forward pass alone {f['forward_only_s']:.2f} s ({f['forward_only_s'] / f['step_default_s']:.0%})",
            ),
            (
                "one step in float32",
                f"{f['step_fp32_s']:.2f} s",
                f"{f['step_fp32_s'] / f['step_default_s']:.2f}x the default",
            ),
            (
                "one step, all 7 projections adapted",
                f"{f['step_all7_s']:.2f} s",
                f"{f['step_all7_s'] / f['step_default_s']:.2f}x the default",
            ),
            (
                "one step, LM head at every position",
                f"{f['step_full_logits_s']:.2f} s",
                f"{f['step_full_logits_s'] / f['step_default_s']:.2f}x: what the output-only loss saves",
            ),
        ]
    )


def main(n_examples: int, epochs: int) -> None:
    figures = run(n_examples, epochs)
    print(report(figures))
    print(f"saved to {save('training', figures)}")
