"""The bridge's proof, for any architecture: a LoRA applied by torch+PEFT and the same LoRA
converted to GGUF and applied by llama.cpp move the logits alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def logit_differences(torch_base, engine, lora, wrong: Path, prompts: list[str], prefix: list[int]) -> dict:
    """Mean |Δlogit| over the prompts' last positions: the bare models against each other, the
    adapter in both, the adapter against a wrongly converted file (`wrong`), and the
    adapter's own effect in torch. `lora` is written here the right way; `prefix`: ids a
    prompt opens with (Gemma's BOS)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from assistant.engine import AdapterUse
    from merger.formats import gguf_lora
    from merger.formats.base_model import HF_NAMES, architecture
    from merger.training import train as trainer

    arch_modules = tuple(lora.modules())
    good = gguf_lora.write(lora, wrong.with_name("good.gguf"), architecture(engine.spec))
    model = get_peft_model(
        torch_base.model,
        LoraConfig(
            r=lora.rank,
            lora_alpha=lora.alpha,
            target_modules=sorted({HF_NAMES[m].split(".")[-1] for m in arch_modules}),
            lora_dropout=0.0,
        ),
    )

    def last(ids: list[int]):
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()

    rows = []
    try:
        config = trainer.TrainConfig(rank=lora.rank, alpha=lora.alpha, targets=arch_modules)
        trainer._load_lora_into(model, lora, config)
        for prompt in prompts:
            ids = [*prefix, *engine.tokenize(prompt)]
            torch_adapted = last(ids)
            with model.disable_adapter():
                torch_bare = last(ids)
            found = {}
            for label, adapters in [("bare", []), ("good", [AdapterUse(good)]), ("wrong", [AdapterUse(wrong)])]:
                engine.set_adapters(adapters)
                found[label] = engine.last_logits(ids)
            rows.append(
                [
                    np.abs(torch_bare - found["bare"]).mean(),
                    np.abs(torch_adapted - found["good"]).mean(),
                    np.abs(torch_adapted - found["wrong"]).mean(),
                    np.abs(torch_adapted - torch_bare).mean(),
                ]
            )
    finally:
        model.unload()
        engine.set_adapters([])
    bare, adapted, wrong_off, effect = (float(x) for x in np.mean(rows, axis=0))
    print(f"mean |d logit|: bare {bare:.3f}, adapted {adapted:.3f}, wrong {wrong_off:.3f}, effect {effect:.3f}")
    return {"bare": bare, "adapted": adapted, "wrong": wrong_off, "effect": effect}


def written_with_llamas_permutation(lora, arch, path: Path) -> Path:
    """The adapter written as if its base were llama (q/k rows permuted): what the bridge must
    not do for an architecture whose converter keeps transformers' row order."""
    from merger.formats import gguf_lora
    from merger.formats.lora import Lora

    heads = {"attn_q": arch.n_heads, "attn_k": arch.n_kv_heads}
    permuted = {
        k: (a, gguf_lora.rotary_permute(b, heads[k.split(".")[2]]) if k.split(".")[2] in heads else b)
        for k, (a, b) in lora.weights.items()
    }
    return gguf_lora.write(Lora(lora.rank, lora.alpha, permuted, lora.base_fingerprint), path, arch)
