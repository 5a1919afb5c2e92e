"""The base model in torch: the same GGUF file llama.cpp serves, loaded by transformers.

The first load dequantizes the GGUF (about 35 s on 2 cores); the float weights are then
cached as safetensors under the data folder, keyed by the file's fingerprint, and later loads
read the cache. Prompts are rendered with the same chat template as the engine.
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

from assistant import chat_template, paths
from assistant.catalogue import ModelSpec, fingerprint, verify
from assistant.engine import default_threads

DONE_MARK = "myna-complete"


@dataclass
class TorchBase:
    model: object  # a transformers causal LM (LlamaForCausalLM, Gemma3ForCausalLM), float32, eval mode
    tokenizer: object
    spec: ModelSpec
    fingerprint: str
    add_bos: bool = False  # the GGUF file's word, as llama.cpp reads it

    def render(self, chat: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        """The chat as the engine renders it (the same template, the same bos and eos text), so
        training and llama.cpp see the same token ids; a test checks they do."""
        return chat_template.render(
            chat_template.choose(self.spec.chat_template, self.tokenizer.chat_template),
            chat,
            bos_token=self.tokenizer.bos_token or "",
            eos_token=self.tokenizer.eos_token or "",
            add_generation_prompt=add_generation_prompt,
        )

    def encode(self, text: str) -> list[int]:
        """Token ids of already-rendered text (special tokens like <|im_start|> included)."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    # The Encoder protocol (merger/data/encoding.py), as the engine offers it too.
    def chat_ids(self, chat: list[dict[str, str]]) -> list[int]:
        """The chat's ids, opened by the model's BOS token where it wants one (Gemma does;
        llama.cpp's engine adds it the same way)."""
        ids = self.encode(self.render(chat))
        bos = self.tokenizer.bos_token_id
        if self.add_bos and bos is not None and (not ids or ids[0] != bos):
            ids.insert(0, bos)
        return ids

    def text_ids(self, text: str) -> list[int]:
        return self.encode(text)

    def text_of(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    @property
    def end_of_turn(self) -> int:
        return self.tokenizer.eos_token_id


def cache_dir(spec: ModelSpec) -> Path:
    return paths.subdir("cache") / f"torch-base-{fingerprint(spec)[:16]}"


def built_cache(spec: ModelSpec) -> Path:
    """The folder of the base model converted for torch, converted first if it is not there."""
    verify(spec)
    cached = cache_dir(spec)
    if not (cached / DONE_MARK).is_file():
        _build_cache(spec, cached)
    return cached


def load(spec: ModelSpec) -> TorchBase:
    import torch
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    # Deprecation notices name transformers' own files: news for its callers, not for users.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
    torch.set_num_threads(default_threads())
    cached = built_cache(spec)
    model = _from_cache(cached)
    tokenizer = AutoTokenizer.from_pretrained(str(cached))
    model.eval()
    from assistant import gguf_file

    return TorchBase(model, tokenizer, spec, fingerprint(spec), add_bos=gguf_file.header(spec.path).add_bos)


def _from_cache(folder: Path):
    import torch
    from safetensors.torch import load_model
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    load_model(model, str(folder / "model.safetensors"))
    return model


def _build_cache(spec: ModelSpec, target: Path) -> None:
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(spec.path.parent), gguf_file=spec.path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(spec.path.parent), gguf_file=spec.path.name)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    # transformers will not save a model it loaded from GGUF; its float weights are plain
    # tensors, so write them and the config directly.
    config = model.config
    config.quantization_config = None
    config.save_pretrained(str(partial))
    save_model(model, str(partial / "model.safetensors"))
    tokenizer.save_pretrained(str(partial))
    (partial / DONE_MARK).write_text(fingerprint(spec))
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def fold(base: TorchBase, lora, sign: float = 1.0) -> None:
    """Add (sign 1) or take away (sign -1) an adapter's update in the base model's own
    weights: a task-adapted base that other adapters are then trained on top of."""
    import torch

    from merger.formats.base_model import HF_NAMES

    layers = base.model.model.layers
    with torch.no_grad():
        for key in lora.weights:
            _, layer, module = key.split(".")
            part, projection = HF_NAMES[module].split(".")
            linear = getattr(getattr(layers[int(layer)], part), projection)
            linear.weight += sign * torch.from_numpy(lora.delta(key)).to(linear.weight.dtype)
