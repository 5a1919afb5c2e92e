"""An exported adapter runs outside Myna: the Modelfile and serve.sh it writes, and the served
adapter answering as `myna ask` does (llama-cpp-python's OpenAI-compatible server, started here
on 127.0.0.1 by the exported script itself)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from merger.formats import elsewhere
from tests.conftest import MYNA

CHATML = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"


def serving(template: str = CHATML, base: Path | None = Path("/models/base.gguf")) -> elsewhere.Serving:
    return elsewhere.Serving(
        base=base,
        base_name="smollm2-135m-instruct-q4_1",
        template=template,
        stop="<|im_end|>",
        system='You are Myna. Say "hello" in English.',
        temperature=0.2,
        top_p=0.9,
        repeat_penalty=1.1,
        context_size=4096,
    )


def test_the_modelfile_names_the_base_the_adapter_and_how_myna_talks_to_it():
    text = elsewhere.modelfile(serving())
    lines = text.splitlines()
    assert "FROM /models/base.gguf" in lines and "ADAPTER ./adapter.gguf" in lines
    assert 'PARAMETER stop "<|im_end|>"' in lines and "PARAMETER temperature 0.2" in lines
    assert "PARAMETER num_ctx 4096" in lines
    assert 'TEMPLATE """{{- range .Messages }}<|im_start|>{{ .Role }}' in text, "ChatML as a Go template"
    assert text.rstrip().endswith('SYSTEM """You are Myna. Say "hello" in English."""')
    unknown = elsewhere.modelfile(serving(template="[INST] {{ messages }} [/INST]"))
    assert "TEMPLATE" not in unknown.replace("No TEMPLATE", ""), "a template Myna cannot translate is left out"
    away = elsewhere.modelfile(serving(base=None))
    assert "FROM /path/to/smollm2-135m-instruct-q4_1.gguf" in away.splitlines()


def test_serve_sh_is_valid_shell_and_prefers_llama_server(tmp_path):
    script = tmp_path / "serve.sh"
    script.write_text(elsewhere.serve_script(serving(base=Path("/models/my base.gguf"))))
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0
    # A llama-server on PATH is what runs: this one prints its arguments.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "llama-server").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    (fake / "llama-server").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}", PORT="9999")
    args = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, check=True).stdout.split("\n")
    assert args[args.index("-m") + 1] == "/models/my base.gguf", "a path with a space stays one argument"
    assert args[args.index("--lora") + 1] == str(tmp_path / "adapter.gguf")
    assert args[args.index("--port") + 1] == "9999" and args[args.index("--host") + 1] == "127.0.0.1"
    assert args[args.index("--chat-template-file") + 1] == str(tmp_path / elsewhere.TEMPLATE_FILE)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(url: str, server: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the server stopped: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("the server did not start")


@pytest.mark.real
def test_the_exported_adapter_served_elsewhere_answers_as_myna_ask_does(myna_home, db, base_arch, tmp_path):
    from assistant.settings import Settings
    from merger.formats import publish
    from merger.formats.lora import random_lora

    question = "Name three colours."
    ask = [MYNA, "ask", "--no-memory", "--quiet", "--temperature", "0", "--max-tokens", "24", question]
    bare = subprocess.run(ask, capture_output=True, text=True, check=True).stdout.strip()
    publish.publish(
        db, random_lora(base_arch, rank=4, seed=3, std=0.4), base_arch, stem="personal", kind="personal",
        card={"kind": "personal"}, activate=True, reason="test",
    )  # fmt: skip
    mine = subprocess.run(ask, capture_output=True, text=True, check=True).stdout.strip()
    assert mine != bare, "the adapter changes the answer, so the comparison below can tell"

    out = tmp_path / "exported"
    done = subprocess.run([MYNA, "export", "-y", "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for name in ("Modelfile", "serve.sh", elsewhere.TEMPLATE_FILE):
        assert (out / name).is_file(), name
    card = (out / "DATA_CARD.md").read_text()
    assert "## Using it elsewhere" in card and "ollama create" in card and "sh serve.sh" in card
    modelfile = (out / "Modelfile").read_text().splitlines()
    base = next(line[5:] for line in modelfile if line.startswith("FROM "))
    assert Path(base).is_file(), "the Modelfile names the base model's file on this machine"

    port = free_port()
    env = dict(os.environ, PORT=str(port), PYTHON=sys.executable)
    log = tmp_path / "server.log"  # a file, not a pipe: llama.cpp's loading log would fill a pipe and block
    with open(log, "w") as sink:
        server = subprocess.Popen(["sh", str(out / "serve.sh")], env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/v1/models", server, log)
        body = {
            "messages": [
                {"role": "system", "content": Settings().system_prompt},
                {"role": "user", "content": question},
            ],
            "temperature": 0,
            "max_tokens": 24,
            "repeat_penalty": Settings().repeat_penalty,
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            served = json.load(response)["choices"][0]["message"]["content"].strip()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert served == mine


def test_a_base_model_without_a_template_is_served_with_the_format_myna_uses(tmp_path):
    gemma = "{{ '<start_of_turn>' + m['role'] }}"
    script = elsewhere.serve_script(elsewhere.Serving(**{**serving(template=gemma).__dict__, "file_template": False}))
    assert "--chat_format gemma" in script and "--chat-template-file" in script
    assert "--chat_format" not in elsewhere.serve_script(serving()), "a file's own template is used as it is"
    assert 'if eq .Role "assistant" }}model' in elsewhere.modelfile(serving(template=gemma))
