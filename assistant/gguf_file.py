"""Is this file a whole GGUF model? A walk over its header, without loading it.

The first four bytes say GGUF; only the header says how long the file must be: its tensor
table gives every tensor's offset, shape and type, so a file cut short (an interrupted copy)
or with a damaged table is found in milliseconds, before llama.cpp is asked to load it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAGIC = b"GGUF"
_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF value type -> bytes
_STRING, _ARRAY, _UINT32, _BOOL = 8, 9, 4, 7
_LIMIT = 1 << 24  # more entries than any real model has: a damaged count


class Damaged(ValueError):
    pass


def problem(path: Path) -> str | None:
    """None for a complete GGUF file, else what is wrong with it (one clause)."""
    size = Path(path).stat().st_size
    try:
        with open(path, "rb") as handle:
            needed = _needed_size(handle, size)
    except Damaged as exc:
        return str(exc)
    except (struct.error, EOFError):
        return "its header is cut short"
    if needed > size:
        return f"it is cut short ({size:,} bytes of the {needed:,} its header describes)"
    return None


@dataclass(frozen=True)
class Header:
    """What a GGUF file says of itself that Myna needs beside llama.cpp: its architecture,
    its chat template (if any) and the text of its end-of-turn token."""

    architecture: str | None
    name: str | None
    chat_template: str | None
    eos_text: str
    file_type: str | None = None  # general.type: "model", or "adapter" for a LoRA file
    add_bos: bool = False  # whether a prompt opens with the BOS token (as llama.cpp decides)


def header(path: Path) -> Header:
    """The header's facts, read in milliseconds (the gguf package's reader maps every tensor
    first: two seconds for a 100 MB model). Raises Damaged for a file that is not GGUF."""
    size = Path(path).stat().st_size
    wanted = {"general.architecture", "general.name", "general.type", "tokenizer.chat_template"}
    found: dict[str, object] = {}
    tokens: list[str] = []
    try:
        with open(path, "rb") as handle:
            if handle.read(4) != MAGIC:
                raise Damaged("it does not start with the GGUF signature")
            version, _tensors, values = struct.unpack("<IQQ", _read(handle, 20))
            if version not in (2, 3) or values > _LIMIT:
                raise Damaged("its header is not one Myna knows")
            for _ in range(values):
                key = _string(handle, size)
                (kind,) = struct.unpack("<I", _read(handle, 4))
                if key in wanted and kind == _STRING:
                    found[key] = _string(handle, size)
                elif key == "tokenizer.ggml.eos_token_id" and kind == _UINT32:
                    (found[key],) = struct.unpack("<I", _read(handle, 4))
                elif key == "tokenizer.ggml.add_bos_token" and kind == _BOOL:
                    found[key] = _read(handle, 1) != b"\x00"
                elif key == "tokenizer.ggml.model" and kind == _STRING:
                    found[key] = _string(handle, size)
                elif key == "tokenizer.ggml.tokens" and kind == _ARRAY:
                    item, count = struct.unpack("<IQ", _read(handle, 12))
                    if item != _STRING or count > size:
                        raise Damaged("its vocabulary is not a list of strings")
                    tokens = [_string(handle, size) for _ in range(count)]
                else:
                    _skip_value(handle, kind, size)
    except (struct.error, EOFError):
        raise Damaged("its header is cut short") from None
    eos = found.get("tokenizer.ggml.eos_token_id")
    return Header(
        architecture=found.get("general.architecture"),
        name=found.get("general.name"),
        chat_template=found.get("tokenizer.chat_template"),
        eos_text=tokens[eos] if isinstance(eos, int) and eos < len(tokens) else "",
        file_type=found.get("general.type"),
        # Without the key, llama.cpp adds BOS for SentencePiece vocabularies ("llama") only.
        add_bos=bool(found.get("tokenizer.ggml.add_bos_token", found.get("tokenizer.ggml.model") == "llama")),
    )


def _needed_size(handle: BinaryIO, size: int) -> int:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    if handle.read(4) != MAGIC:
        raise Damaged("it does not start with the GGUF signature")
    version, tensors, values = struct.unpack("<IQQ", _read(handle, 20))
    if version not in (2, 3):
        raise Damaged(f"it is GGUF version {version}, which Myna does not know")
    if tensors > _LIMIT or values > _LIMIT:
        raise Damaged("its header counts are impossible")
    alignment = 32
    for _ in range(values):
        key = _string(handle, size)
        (kind,) = struct.unpack("<I", _read(handle, 4))
        if key == "general.alignment" and kind == _UINT32:
            (alignment,) = struct.unpack("<I", _read(handle, 4))
            if alignment == 0 or alignment & (alignment - 1):
                raise Damaged(f"its alignment {alignment} is not a power of two")
        else:
            _skip_value(handle, kind, size)
    end = 0
    for _ in range(tensors):
        _string(handle, size)
        (dims,) = struct.unpack("<I", _read(handle, 4))
        if dims > 8:
            raise Damaged("a tensor has an impossible number of dimensions")
        shape = struct.unpack(f"<{dims}Q", _read(handle, 8 * dims))
        kind, offset = struct.unpack("<IQ", _read(handle, 12))
        try:
            block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(kind)]
        except (ValueError, KeyError):
            raise Damaged(f"a tensor has an unknown type ({kind})") from None
        count = 1
        for n in shape:
            count *= n
        end = max(end, offset + count // block * block_bytes)
    start = handle.tell()
    start += -start % alignment
    return start + end


def _read(handle: BinaryIO, n: int) -> bytes:
    data = handle.read(n)
    if len(data) != n:
        raise EOFError
    return data


def _string(handle: BinaryIO, size: int) -> str:
    (length,) = struct.unpack("<Q", _read(handle, 8))
    if length > size:
        raise Damaged("its header holds a string longer than the file")
    return _read(handle, length).decode("utf-8", "replace")


def _skip_value(handle: BinaryIO, kind: int, size: int) -> None:
    if kind in _SCALAR:
        _read(handle, _SCALAR[kind])
    elif kind == _STRING:
        _string(handle, size)
    elif kind == _ARRAY:
        item, count = struct.unpack("<IQ", _read(handle, 12))
        if count > size:
            raise Damaged("its header holds an array longer than the file")
        if item in _SCALAR:
            handle.seek(_SCALAR[item] * count, 1)
        else:
            for _ in range(count):
                _skip_value(handle, item, size)
    else:
        raise Damaged(f"its header holds a value of unknown type {kind}")
