"""Export all-MiniLM-L6-v2 to ONNX, once per machine, for ONNX Runtime (assistant/embeddings.py).

The network is the packaged safetensors model as transformers builds it, with sentence-
transformers' mean pooling and normalization inside the graph, so the runtime returns the
finished vectors. ONNX Runtime's own BERT optimizer then fuses attention, GELU and layer norms
(about 15 % faster on 2 cores, same vectors to 3e-7). torch is imported here only, and this module runs in a process of its own
(`python -m assistant.embedding_export TARGET`), never in the chat process that needs the file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

OPSET = 17


def export(target: Path) -> None:
    """Write the ONNX model to `target` atomically: a killed export leaves no file behind."""
    import warnings

    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    from assistant.embeddings import MAX_TOKENS, model_dir

    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore")  # the exporter's notes on tracing are for its developers
    directory = model_dir()
    bert = AutoModel.from_pretrained(str(directory), attn_implementation="eager").eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.enable_padding()
    sample = tokenizer.encode_batch(["A short note.", "A longer note, so that the batch needs padding here."])
    ids = torch.tensor([e.ids for e in sample], dtype=torch.int64)
    mask = torch.tensor([e.attention_mask for e in sample], dtype=torch.int64)

    target.parent.mkdir(parents=True, exist_ok=True)
    plain = target.with_name(f"{target.name}.{os.getpid()}.plain")
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        with torch.no_grad():
            torch.onnx.export(
                Pooled(),
                (ids, mask),
                str(plain),
                input_names=["input_ids", "attention_mask"],
                output_names=["embedding"],
                dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}},
                opset_version=OPSET,
                dynamo=False,
            )
        fuse(plain, partial, heads=bert.config.num_attention_heads, hidden=bert.config.hidden_size)
        os.replace(partial, target)
    finally:
        plain.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)


def fuse(source: Path, target: Path, heads: int, hidden: int) -> None:
    from onnxruntime.transformers import optimizer

    model = optimizer.optimize_model(str(source), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=1)
    model.save_model_to_file(str(target))


if __name__ == "__main__":
    export(Path(sys.argv[1]))
