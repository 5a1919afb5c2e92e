"""What an exported adapter needs to answer outside Myna as it does inside: an Ollama Modelfile
and a llama-server script, each with the base model, the chat template, the stop token, the
system prompt and the sampling Myna uses. Plain text out of plain data; written by export."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from assistant.adapters import Adapter
from assistant.settings import Settings

# Ollama's templates are Go templates, not Jinja: the families Myna knows by their markers.
# (A template Myna does not know is left out: Ollama then uses the one in the GGUF file.)
_OLLAMA_TEMPLATES = {
    "<|im_start|>": (  # ChatML: SmolLM2, Qwen 2.5 and 3
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
    ),
    "<|start_header_id|>": (  # Llama 3.x
        "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>"
        "{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "<start_of_turn>": (  # Gemma: no system role, so the system prompt is a user turn of its own
        '{{- range .Messages }}<start_of_turn>{{ if eq .Role "assistant" }}model{{ else }}user{{ end }}\n'
        "{{ .Content }}<end_of_turn>\n{{ end }}<start_of_turn>model\n"
    ),
}
# llama-cpp-python's server reads the template inside the model file; for a file without one,
# its own name for the chat format Myna uses.
_SERVER_FORMATS = {"<|im_start|>": "chatml", "<|start_header_id|>": "llama-3", "<start_of_turn>": "gemma"}
TEMPLATE_FILE = "chat_template.jinja"
PORT = 8080


@dataclass(frozen=True)
class Serving:
    """How Myna runs the adapter's base model: what the exported files must repeat."""

    base: Path | None  # the base GGUF on this machine; None when it is not here
    base_name: str
    template: str  # the Jinja chat template Myna renders chats with
    stop: str  # the end-of-turn token's text
    system: str
    temperature: float
    top_p: float
    repeat_penalty: float
    context_size: int
    file_template: bool = True  # the base model's file carries a chat template of its own


def serving_for(adapter: Adapter, settings: Settings, model: str | None = None) -> Serving:
    """How Myna would run this adapter: on the model chosen now if the adapter was trained on
    it, else on the catalogue model it was trained on; base None if neither is on this machine."""
    from assistant import catalogue, chat_template, gguf_file
    from assistant.errors import MynaError

    try:
        chosen = [catalogue.resolve(model or settings.model)]
    except MynaError:
        chosen = []
    spec = next(
        (
            s
            for s in [*chosen, *catalogue.manifests()]
            if s.path.is_file() and catalogue.fingerprint(s) == adapter.base_fingerprint
        ),
        None,
    )
    facts = gguf_file.header(spec.path) if spec else None
    return Serving(
        base=spec.path if spec else None,
        base_name=spec.name if spec else adapter.card.get("base_model", {}).get("name", "the base model"),
        template=chat_template.choose(spec.chat_template, facts.chat_template) if spec and facts else "",
        stop=facts.eos_text if facts else "",
        system=settings.system_prompt,
        temperature=settings.temperature,
        top_p=settings.top_p,
        repeat_penalty=settings.repeat_penalty,
        context_size=settings.context_size,
        file_template=bool(facts and facts.chat_template),
    )


def ollama_template(jinja: str) -> str | None:
    return next((go for marker, go in _OLLAMA_TEMPLATES.items() if marker in jinja), None)


def modelfile(serving: Serving, adapter_file: str = "adapter.gguf") -> str:
    base = str(serving.base) if serving.base else f"/path/to/{serving.base_name}.gguf"
    lines = [
        "# Ollama: `ollama create my-myna -f Modelfile`, then `ollama run my-myna`.",
        f"# The base model, {serving.base_name}, must be this file (the adapter was trained on it).",
        f"FROM {base}",
        f"ADAPTER ./{adapter_file}",
    ]
    template = ollama_template(serving.template)
    if template:
        lines.append(f'TEMPLATE """{template}"""')
    else:
        lines.append("# No TEMPLATE: Ollama uses the chat template inside the base model's file.")
    if serving.stop:
        lines.append(f"PARAMETER stop {_quoted(serving.stop)}")
    lines += [
        f"PARAMETER temperature {serving.temperature:g}",
        f"PARAMETER top_p {serving.top_p:g}",
        f"PARAMETER repeat_penalty {serving.repeat_penalty:g}",
        f"PARAMETER num_ctx {serving.context_size}",
        f'SYSTEM """{serving.system.replace(chr(34) * 3, chr(34))}"""',
    ]
    return "\n".join(lines) + "\n"


def serve_script(serving: Serving, adapter_file: str = "adapter.gguf") -> str:
    """A shell script serving the base model with the adapter on 127.0.0.1 (OpenAI-compatible
    API): llama.cpp's llama-server where it is installed, else llama-cpp-python's server."""
    base = shlex.quote(str(serving.base)) if serving.base else shlex.quote(f"/path/to/{serving.base_name}.gguf")
    known = next((name for marker, name in _SERVER_FORMATS.items() if marker in serving.template), None)
    chat_format = f" --chat_format {known}" if known and not serving.file_template else ""
    return f"""#!/bin/sh
# Serve this adapter on http://127.0.0.1:$PORT/v1 (an OpenAI-compatible API), answering as Myna does.
# BASE must be {serving.base_name}, the model the adapter was trained on; PORT defaults to {PORT}.
# llama.cpp's llama-server if it is on PATH, else llama-cpp-python's server
# (pip install 'llama-cpp-python[server]'; PYTHON chooses the interpreter).
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
BASE=${{BASE:-{base}}}
PORT=${{PORT:-{PORT}}}
if command -v llama-server >/dev/null 2>&1; then
    exec llama-server -m "$BASE" --lora "$HERE/{adapter_file}" --host 127.0.0.1 --port "$PORT" \\
        -c {serving.context_size} --jinja --chat-template-file "$HERE/{TEMPLATE_FILE}" \\
        --temp {serving.temperature:g} --top-p {serving.top_p:g} --repeat-penalty {serving.repeat_penalty:g}
fi
exec "${{PYTHON:-python3}}" -m llama_cpp.server --model "$BASE" --lora_path "$HERE/{adapter_file}" \\
    --host 127.0.0.1 --port "$PORT" --n_ctx {serving.context_size}{chat_format}
"""


def usage_markdown(serving: Serving) -> str:
    """The data card's section on running the exported adapter elsewhere."""
    where = f"`{serving.base}`" if serving.base else "not on this machine"
    return f"""## Using it elsewhere

The adapter changes {serving.base_name} (here: {where}); it must be applied to that model,
and answers as in Myna with the chat template, stop token and system prompt written here.

- **Ollama**: `ollama create my-myna -f Modelfile`, then `ollama run my-myna`. The Modelfile
  names the base model's file (`FROM`), the adapter (`ADAPTER ./adapter.gguf`), the chat
  template, the stop token `{serving.stop}`, Myna's sampling and its system prompt.
- **llama.cpp's llama-server**, or llama-cpp-python's server where llama-server is not
  installed: `sh serve.sh` serves an OpenAI-compatible API on http://127.0.0.1:{PORT}/v1
  (`BASE=/path/to/model.gguf sh serve.sh` if the base model is elsewhere). The chat template
  Myna uses is in `{TEMPLATE_FILE}`.
- **Python (PEFT)**: `PeftModel.from_pretrained(base, "this folder")` with the base model
  loaded by transformers (`adapter_model.safetensors`, `adapter_config.json`).

Whoever you give these files to can use the adapter, and may learn from it something of what it
was trained on: see the privacy section above.
"""


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
