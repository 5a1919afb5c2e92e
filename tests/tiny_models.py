"""Tiny random models of other architectures, made as their authors' files are: a transformers
config and random weights saved as safetensors, then converted to GGUF by llama.cpp's own
converter (convert_hf_to_gguf.py, from the llama.cpp source that llama-cpp-python's release
ships; `make setup` unpacks it into .venv/llama.cpp). Small enough to build in seconds, and
stored in float32, so torch and llama.cpp agree to a few 1e-5."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONVERTERS = REPO / ".venv" / "llama.cpp"

# Run in a process of its own: the converter's package is called `conversion`, and its
# tokenizer check knows the published tokenizers by a hash, which a tokenizer saved again by
# transformers does not keep; the tiny models borrow SmolLM2's, so it is named as that.
_CONVERT = """
import runpy, sys
source = sys.argv[1]
sys.path.insert(0, source)
import conversion.base
conversion.base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "smollm"
sys.argv = ["convert_hf_to_gguf.py", *sys.argv[2:]]
runpy.run_path(source + "/convert_hf_to_gguf.py", run_name="__main__")
"""


def build(kind: str, folder: Path, tokenizer) -> Path:
    """A tiny `kind` ("qwen2", "qwen3") model with `tokenizer`'s vocabulary, as a GGUF file."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    assert (CONVERTERS / "convert_hf_to_gguf.py").is_file(), "run `make setup`: it unpacks llama.cpp's converters"
    config_class, model_class = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "qwen3": (Qwen3Config, Qwen3ForCausalLM)}[
        kind
    ]
    torch.manual_seed(0)
    config = config_class(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    source = folder / f"{kind}-hf"
    model_class(config).save_pretrained(str(source))
    tokenizer.save_pretrained(str(source))
    target = folder / f"tiny-{kind}.gguf"
    done = subprocess.run(
        [sys.executable, "-c", _CONVERT, str(CONVERTERS), str(source), "--outfile", str(target), "--outtype", "f32"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return target
