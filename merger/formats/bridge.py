"""PEFT adapters (safetensors + adapter_config.json) to and from `Lora` arrays, and the one
entry point that reads any adapter file Myna accepts.

Adapter files can come from anyone, so only formats that hold plain tensors are read:
safetensors and GGUF. Pickle-based files (.bin, .pt, .pth, .ckpt, .pkl) are refused without
being opened, because unpickling runs code.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from assistant.atomic import atomic_path, atomic_write_text
from assistant.errors import MynaError
from merger.formats import gguf_lora
from merger.formats.base_model import GGUF_NAMES, HF_NAMES, Architecture
from merger.formats.lora import Lora, key

PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib"}
_PEFT_KEY = re.compile(r"^(?:base_model\.model\.)?model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)\.lora_([AB])\.weight$")


def peft_key(layer: int, module: str, which: str) -> str:
    return f"base_model.model.model.layers.{layer}.{HF_NAMES[module]}.lora_{which}.weight"


def to_peft(lora: Lora) -> tuple[dict[str, np.ndarray], dict]:
    tensors = {}
    for name, (a, b) in lora.weights.items():
        _, layer, module = name.split(".")
        tensors[peft_key(int(layer), module, "A")] = np.ascontiguousarray(a, dtype=np.float32)
        tensors[peft_key(int(layer), module, "B")] = np.ascontiguousarray(b, dtype=np.float32)
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": 0.0,
        "bias": "none",
        "target_modules": sorted({HF_NAMES[m].split(".")[-1] for m in lora.modules()}),
        "fan_in_fan_out": False,
        "inference_mode": True,
        "myna_base_fingerprint": lora.base_fingerprint,
    }
    return tensors, config


def from_peft(tensors: dict[str, np.ndarray], config: dict, *, source: str) -> Lora:
    if config.get("peft_type", "LORA") != "LORA":
        raise MynaError(f"{source} is a {config.get('peft_type')} adapter; Myna uses LoRA adapters only.")
    if config.get("use_dora") or config.get("use_rslora"):
        raise MynaError(f"{source} uses DoRA or rsLoRA, which llama.cpp cannot apply; use a plain LoRA adapter.")
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for name, tensor in tensors.items():
        match = _PEFT_KEY.match(name)
        if not match or match.group(3) not in GGUF_NAMES:
            raise MynaError(f"{source} holds an unexpected tensor '{name}'; it is not a LoRA adapter Myna can use.")
        layer, _, projection, which = match.groups()
        pairs.setdefault(key(int(layer), GGUF_NAMES[projection]), {})[which] = np.asarray(tensor, dtype=np.float32)
    if not pairs:
        raise MynaError(f"{source} holds no LoRA tensors.")
    weights = {}
    for name, pair in pairs.items():
        if set(pair) != {"A", "B"}:
            raise MynaError(f"{source} has only half of the LoRA pair for {name}; the file is incomplete.")
        weights[name] = (pair["A"], pair["B"])
    rank = int(config.get("r") or next(iter(weights.values()))[0].shape[0])
    return Lora(
        rank=rank,
        alpha=float(config.get("lora_alpha", rank)),
        weights=weights,
        base_fingerprint=str(config.get("myna_base_fingerprint", "")),
    )


def write_peft(lora: Lora, folder: Path) -> None:
    from safetensors.numpy import save_file

    tensors, config = to_peft(lora)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / PEFT_WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    atomic_write_text(folder / PEFT_CONFIG, json.dumps(config, indent=2) + "\n")


def read_peft(path: Path) -> Lora:
    """A PEFT adapter: its folder, or its .safetensors file with adapter_config.json beside it."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    weights_file = path / PEFT_WEIGHTS if path.is_dir() else path
    config_file = weights_file.parent / PEFT_CONFIG
    if not weights_file.is_file():
        raise MynaError(f"{path} holds no {PEFT_WEIGHTS}; Myna reads PEFT adapters saved as safetensors.")
    try:
        tensors = load_file(str(weights_file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise MynaError(
            f"{weights_file} is not a readable safetensors file ({exc}); it is damaged or truncated."
        ) from None
    try:
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    except ValueError as exc:
        raise MynaError(f"{config_file} is not valid JSON ({exc}).") from None
    return from_peft(tensors, config, source=str(weights_file))


def load(path: Path, arch: Architecture) -> Lora:
    """Any adapter Myna accepts (GGUF, or PEFT safetensors), checked against the base model."""
    path = Path(path)
    if not path.exists():
        raise MynaError(f"{path} does not exist.")
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise MynaError(
            f"{path} is a pickle file, which can run code when opened, so Myna refuses it; "
            "ask for the adapter as safetensors or GGUF."
        )
    if path.is_file() and _is_pickle(path):
        raise MynaError(f"{path} is a pickle file in disguise, which can run code when opened, so Myna refuses it.")
    if suffix == ".gguf":
        lora = gguf_lora.read(path, arch)
    elif suffix == ".safetensors" or path.is_dir():
        lora = read_peft(path)
        gguf_lora.check_shapes(lora, arch, source=str(path))
    else:
        raise MynaError(
            f"{path}: Myna reads adapters as .gguf or PEFT .safetensors files, not '{suffix or 'no extension'}'."
        )
    if not lora.base_fingerprint:
        lora.base_fingerprint = arch.fingerprint  # shapes matched: as close as the file lets us check
    return lora


def _is_pickle(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(4)
    # A pickle starts with the PROTO opcode; torch's zip-pickles are zip files.
    return head[:1] == b"\x80" or head == b"PK\x03\x04"
