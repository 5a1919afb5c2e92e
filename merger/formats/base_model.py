"""The shape of a base model, as adapters need it: layers, widths, heads.

Read from the GGUF header once per model file and cached by fingerprint (parsing the
header's 49k-token vocabulary takes seconds; the result is a few numbers).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from assistant import paths
from assistant.atomic import atomic_write_text
from assistant.catalogue import ModelSpec, fingerprint, verify
from assistant.errors import MynaError

# GGUF tensor names of the projections a LoRA can adapt, and their names in transformers.
MODULES = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
HF_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
GGUF_NAMES = {hf.split(".")[-1]: gguf for gguf, hf in HF_NAMES.items()}  # "q_proj" -> "attn_q"


@dataclass(frozen=True)
class Architecture:
    fingerprint: str
    n_layers: int
    hidden: int
    ffn: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab: int
    name: str = "llama"  # the GGUF architecture: its adapters are written for it

    def shape(self, module: str) -> tuple[int, int]:
        """(in_features, out_features) of a projection."""
        q, kv = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        return {
            "attn_q": (self.hidden, q),
            "attn_k": (self.hidden, kv),
            "attn_v": (self.hidden, kv),
            "attn_output": (q, self.hidden),
            "ffn_gate": (self.hidden, self.ffn),
            "ffn_up": (self.hidden, self.ffn),
            "ffn_down": (self.ffn, self.hidden),
        }[module]

    def heads(self, module: str) -> int | None:
        """Heads whose rows llama.cpp permutes for rotary embeddings (q and k only): its
        converter does so for llama alone; other architectures keep transformers' row order."""
        if self.name != "llama":
            return None
        return {"attn_q": self.n_heads, "attn_k": self.n_kv_heads}.get(module)


# The GGUF architectures whose adapters Myna can train, merge and convert, each proven by the
# logit check (tests/test_training_real.py, tests/test_architectures.py): transformers loads
# them from GGUF with the same projections (HF_NAMES), and the bridge permutes q/k rows for
# llama only.
PERSONALIZABLE = ("llama", "gemma3", "qwen2")


def require_personalizable(spec: ModelSpec, arch: str | None = None) -> None:
    """One sentence, before any work, for a model Myna can chat with but not personalize."""
    if arch is None:
        from assistant import gguf_file

        verify(spec)
        arch = gguf_file.header(spec.path).architecture
    if arch not in PERSONALIZABLE:
        raise MynaError(
            f"{spec.name} is a '{arch}' model: Myna chats with it, but trains and merges adapters only for "
            f"{', '.join(PERSONALIZABLE)} models so far."
        )


def architecture(spec: ModelSpec) -> Architecture:
    digest = fingerprint(spec)
    cache = paths.subdir("cache") / f"architecture-{digest[:16]}.json"
    try:
        return Architecture(**json.loads(cache.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    found = _read(spec, digest)
    atomic_write_text(cache, json.dumps(asdict(found)))
    return found


def _read(spec: ModelSpec, digest: str) -> Architecture:
    from gguf import GGUFReader

    verify(spec)
    reader = GGUFReader(str(spec.path))

    def field(key: str):
        item = reader.fields.get(key)
        return item.contents() if item is not None else None

    arch = field("general.architecture")
    require_personalizable(spec, arch)
    hidden = int(field(f"{arch}.embedding_length"))
    n_heads = int(field(f"{arch}.attention.head_count"))
    vocab = field(f"{arch}.vocab_size") or len(reader.fields["tokenizer.ggml.tokens"].data)
    return Architecture(
        fingerprint=digest,
        n_layers=int(field(f"{arch}.block_count")),
        hidden=hidden,
        ffn=int(field(f"{arch}.feed_forward_length")),
        n_heads=n_heads,
        n_kv_heads=int(field(f"{arch}.attention.head_count_kv") or n_heads),
        head_dim=int(field(f"{arch}.attention.key_length") or hidden // n_heads),
        vocab=int(vocab),
        name=arch,
    )
