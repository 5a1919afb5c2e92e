"""The real model in the real llama.cpp."""

import shutil

import pytest

from assistant.catalogue import resolve
from assistant.engine import AdapterUse, Engine, SamplingParams
from assistant.errors import MynaError
from merger.formats import gguf_lora
from merger.formats.base_model import Architecture
from merger.formats.lora import random_lora

pytestmark = pytest.mark.real
GREEDY = SamplingParams(max_tokens=24, temperature=0.0)
CHAT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Write one sentence about the sea."},
]


def greedy(engine, chat=CHAT, params=GREEDY):
    return engine.generate(engine.tokenize_chat(chat), params, lambda piece: None).text


def test_chat_template_is_chatml(clean_engine):
    text = clean_engine.render(CHAT)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert text.endswith("<|im_start|>assistant\n")
    tokens = clean_engine.tokenize_chat(CHAT)
    assert tokens[0] == clean_engine.llm.tokenize(b"<|im_start|>", add_bos=False, special=True)[0]


def test_amx_kernels_stay_off_where_the_cpu_has_them(clean_engine):
    # llama.cpp's AMX kernels crash on the default Q4_1 model (assistant/engine.py, new_llama);
    # elsewhere every buffer type stays on.
    from assistant.engine import cpu_has_amx

    assert clean_engine.llm.model_params.use_extra_bufts is not cpu_has_amx()
    assert greedy(clean_engine).strip()  # and a reply decodes: the crash was in the first decode


def test_thread_count_changes_between_replies_and_keeps_the_reply(clean_engine):
    before = greedy(clean_engine)
    threads = clean_engine.threads
    try:
        clean_engine.set_threads(1)
        assert clean_engine.threads == 1
        assert greedy(clean_engine) == before  # greedy decoding does not depend on the threads
    finally:
        clean_engine.set_threads(threads)


def test_reply_streams_in_pieces(clean_engine):
    pieces = []
    done = clean_engine.generate(clean_engine.tokenize_chat(CHAT), SamplingParams(max_tokens=40, seed=3), pieces.append)
    assert len(pieces) > 3
    assert "".join(pieces) == done.text
    assert done.text.strip()
    assert done.finish in ("stop", "length")
    assert 0 < done.tokens <= 40


def test_same_seed_same_reply(clean_engine):
    params = SamplingParams(max_tokens=20, temperature=0.8, seed=42)
    assert greedy(clean_engine, params=params) == greedy(clean_engine, params=params)


def test_stop_request_cancels(clean_engine):
    seen = []
    done = clean_engine.generate(
        clean_engine.tokenize_chat(CHAT),
        SamplingParams(max_tokens=200),
        seen.append,
        should_stop=lambda: len(seen) >= 3,
    )
    assert done.finish == "cancelled"
    assert done.tokens <= 4


def test_switching_adapters_changes_the_reply_and_back(clean_engine, adapter_files):
    bare = greedy(clean_engine)
    clean_engine.set_adapters([AdapterUse(adapter_files[0])])
    first = greedy(clean_engine)
    clean_engine.set_adapters([AdapterUse(adapter_files[1])])
    second = greedy(clean_engine)
    clean_engine.set_adapters([])
    again = greedy(clean_engine)
    assert first != bare and second != bare and first != second
    assert again == bare, "removing the adapter restores the base model exactly"
    assert clean_engine.adapter_name is None


def test_adapter_name_is_recorded(clean_engine, adapter_files):
    clean_engine.set_adapters([AdapterUse(adapter_files[0]), AdapterUse(adapter_files[1], 0.5)])
    assert clean_engine.adapter_name == "random-1.gguf+random-2.gguf*0.5"


def test_adapter_for_another_base_model_is_refused(clean_engine, base_arch, tmp_path):
    other = Architecture(**{**base_arch.__dict__, "hidden": 640, "fingerprint": base_arch.fingerprint})
    path = gguf_lora.write(random_lora(other, rank=2, modules=("attn_v",)), tmp_path / "other.gguf", other)
    with pytest.raises(MynaError, match="another base model"):
        clean_engine.set_adapters([AdapterUse(path)])
    assert clean_engine.active_adapters == ()


def python_calls(name: str):
    """A profile hook counting the calls of Python functions named `name` in this thread."""
    calls = []

    def hook(frame, event, arg):
        if event == "call" and frame.f_code.co_name == name:
            calls.append(1)

    return calls, hook


def test_damaged_adapter_is_refused(clean_engine, adapter_files, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(adapter_files[0].read_bytes()[:5000])
    # The reason is llama.cpp's own line, heard on a second try (its lines go to C otherwise).
    with pytest.raises(MynaError, match=r"could not load the adapter \S+ \(failed to read tensor info\)"):
        clean_engine.set_adapters([AdapterUse(cut)])
    with pytest.raises(MynaError, match="does not exist"):
        clean_engine.set_adapters([AdapterUse(tmp_path / "absent.gguf")])


def test_prompt_longer_than_context(clean_engine):
    with pytest.raises(MynaError, match="context holds"):
        clean_engine.generate(list(range(5000)), GREEDY, lambda piece: None)


def test_truncated_model_gives_one_sentence(tmp_path):
    spec = resolve("smollm2-135m-instruct-q4_1")
    cut = tmp_path / "cut.gguf"
    with open(spec.path, "rb") as src, open(cut, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.truncate(40_000_000)
    with pytest.raises(MynaError, match="not a usable GGUF model: it is cut short.*--model PATH"):
        Engine(resolve(str(cut)))


def test_llama_cpp_logs_call_no_python_while_a_model_loads(clean_engine):
    """llama.cpp logs about 2,200 lines while it loads a model. Through a Python callback each
    one needed the GIL, and beside a busy thread (a cold `myna ask` imports ONNX Runtime while
    the model loads) the load took 5 s instead of 0.13 s. They go to a C function instead."""
    import sys

    calls, hook = python_calls("_log_callback")
    sys.setprofile(hook)
    try:
        engine = Engine(clean_engine.spec, context_size=512)
        assert greedy(engine, params=SamplingParams(max_tokens=4, temperature=0.0)).strip()
    finally:
        sys.setprofile(None)
    assert calls == []
