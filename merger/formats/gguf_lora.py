"""LoRA adapters as GGUF files, the format llama.cpp applies at run time.

llama.cpp stores the rows of q and k projections permuted for its rotary embedding; a LoRA's
B matrices of q and k must be permuted the same way, or the adapter changes the wrong rows.
Writing applies the permutation, reading undoes it, so `Lora` objects never carry it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from assistant.atomic import atomic_path
from assistant.errors import MynaError
from merger.formats.base_model import MODULES, Architecture
from merger.formats.lora import Lora

TENSOR_NAME = re.compile(r"^blk\.(\d+)\.(" + "|".join(MODULES) + r")\.weight\.lora_([ab])$")
META_PREFIX = "myna."


def rotary_permute(rows: np.ndarray, heads: int) -> np.ndarray:
    """transformers row order -> llama.cpp row order, for q/k projections' output rows."""
    out = rows.shape[0]
    return rows.reshape(heads, 2, out // heads // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def rotary_unpermute(rows: np.ndarray, heads: int) -> np.ndarray:
    out = rows.shape[0]
    return rows.reshape(heads, out // heads // 2, 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def write(lora: Lora, path: Path, arch: Architecture) -> Path:
    """Write `lora` as a GGUF adapter for the base model `arch`, atomically."""
    import gguf

    check_shapes(lora, arch, source=str(path))
    with atomic_path(path) as tmp:
        writer = gguf.GGUFWriter(str(tmp), arch.name)  # llama.cpp refuses an adapter of another architecture
        writer.add_string("general.type", "adapter")
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", float(lora.alpha))
        writer.add_string(META_PREFIX + "base_fingerprint", lora.base_fingerprint or arch.fingerprint)
        for name, value in sorted(lora.metadata.items()):
            writer.add_string(META_PREFIX + name, str(value))
        for key, (a, b) in lora.weights.items():
            module = key.split(".")[2]
            heads = arch.heads(module)
            b_rows = rotary_permute(b, heads) if heads else b
            writer.add_tensor(f"{key}.weight.lora_a", np.ascontiguousarray(a, dtype=np.float32))
            writer.add_tensor(f"{key}.weight.lora_b", np.ascontiguousarray(b_rows, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return Path(path)


def read(path: Path, arch: Architecture | None = None) -> Lora:
    """Read and check a GGUF LoRA adapter; MynaError names what is wrong with it."""
    import gguf

    path = Path(path)
    try:
        return _from_reader(gguf.GGUFReader(str(path)), path, arch)
    except MynaError:
        raise
    except Exception as exc:  # the gguf package raises many kinds, some lazily, on a damaged file
        raise MynaError(f"{path} is not a readable GGUF file ({exc}); it is damaged or truncated.") from None


def _from_reader(reader, path: Path, arch: Architecture | None) -> Lora:
    def text(key: str) -> str | None:
        item = reader.fields.get(key)
        return None if item is None else str(item.contents())

    if text("general.type") != "adapter" or text("adapter.type") != "lora":
        raise MynaError(f"{path} is not a LoRA adapter (general.type is {text('general.type')!r}).")
    alpha_field = reader.fields.get("adapter.lora.alpha")
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for tensor in reader.tensors:
        match = TENSOR_NAME.match(tensor.name)
        if not match:
            raise MynaError(f"{path} holds an unexpected tensor '{tensor.name}'; it is not an adapter Myna can use.")
        if tensor.tensor_type.name not in ("F32", "F16"):
            raise MynaError(
                f"{path} stores '{tensor.name}' as {tensor.tensor_type.name}; only F32 and F16 adapters are supported."
            )
        layer, module, which = match.groups()
        pairs.setdefault(f"blk.{layer}.{module}", {})[which] = np.array(tensor.data, dtype=np.float32)
    if not pairs:
        raise MynaError(f"{path} holds no LoRA tensors.")
    weights = {}
    for key, pair in pairs.items():
        if set(pair) != {"a", "b"}:
            raise MynaError(f"{path} has only half of the LoRA pair for {key}; the file is incomplete.")
        weights[key] = (pair["a"], pair["b"])
    rank = next(iter(weights.values()))[0].shape[0]
    metadata = {
        name[len(META_PREFIX) :]: str(item.contents())
        for name, item in reader.fields.items()
        if name.startswith(META_PREFIX)
    }
    lora = Lora(
        rank=rank,
        alpha=float(alpha_field.contents()) if alpha_field is not None else float(rank),
        weights=weights,
        base_fingerprint=metadata.pop("base_fingerprint", ""),
        metadata=metadata,
    )
    if arch is not None:
        check_shapes(lora, arch, source=str(path))
        for key, (a, b) in list(lora.weights.items()):
            heads = arch.heads(key.split(".")[2])
            if heads:
                lora.weights[key] = (a, rotary_unpermute(b, heads))
    return lora


def check_shapes(lora: Lora, arch: Architecture, *, source: str) -> None:
    """Every matrix must fit the base model: right layer count, widths and one rank."""
    if lora.base_fingerprint and lora.base_fingerprint != arch.fingerprint:
        raise MynaError(
            f"{source} was made for another base model (fingerprint {lora.base_fingerprint[:12]}, "
            f"this one is {arch.fingerprint[:12]}); use an adapter made for the current model."
        )
    for key, (a, b) in lora.weights.items():
        layer, module = int(key.split(".")[1]), key.split(".")[2]
        fan_in, fan_out = arch.shape(module)
        if layer >= arch.n_layers or a.shape != (lora.rank, fan_in) or b.shape != (fan_out, lora.rank):
            raise MynaError(
                f"{source}: {key} has shapes A{tuple(a.shape)} B{tuple(b.shape)}, but this base model needs "
                f"A({lora.rank}, {fan_in}) B({fan_out}, {lora.rank}) in {arch.n_layers} layers; "
                "it was made for another base model."
            )
