"""Personal adapters on the real base model: torch + PEFT training, the GGUF bridge, llama.cpp."""

import hashlib
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from assistant import adapters
from assistant.engine import AdapterUse, SamplingParams
from assistant.settings import Settings
from merger.data import examples
from merger.formats import gguf_lora
from merger.formats.lora import random_lora
from merger.training import train as trainer
from tests.bridge_check import logit_differences
from tests.conftest import MYNA, run_env, run_watched, share_torch_cache
from tests.style_data import SIGN_OFF, plant

pytestmark = pytest.mark.real
SYSTEM = Settings().system_prompt
PROMPTS = [
    "The capital of France is",
    "Once upon a time in a small village",
    "def fibonacci(n):\n    ",
    "My favourite food is",
    "In 1969, the first",
]


def torch_logits(model, ids):
    import torch

    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()


def test_torch_and_llama_cpp_tokenize_alike(torch_base, clean_engine):
    """Training (torch) and answering (llama.cpp) must see the same ids for the same chat:
    with a system prompt or none, earlier turns (demonstrations), odd characters."""
    turn = [{"role": "user", "content": "Héllo wörld, 2+2? 🙂"}]
    chats = [
        [{"role": "system", "content": "Be brief."}, *turn],
        turn,
        [
            {"role": "system", "content": "You are Myna."},
            {"role": "user", "content": "Title this: rain falls."},
            {"role": "assistant", "content": "Rain Falls"},
            {"role": "user", "content": "Title this: sun <b>shines</b>\n."},
        ],
    ]
    for chat in chats:
        assert torch_base.chat_ids(chat) == clean_engine.chat_ids(chat)
        assert torch_base.render(chat, add_generation_prompt=False) == clean_engine.render(
            chat, add_generation_prompt=False
        )


def test_gguf_bridge_matches_torch_peft(torch_base, clean_engine, base_arch, tmp_path, monkeypatch):
    """The converted adapter changes llama.cpp's logits as PEFT changes torch's: the two
    differ no more than the bare models do, while the adapter's own effect is large; written
    without the q/k row permutation, they would differ by far more."""
    lora = random_lora(base_arch, rank=8, seed=3, std=0.8)
    monkeypatch.setattr(gguf_lora, "rotary_permute", lambda rows, heads: rows)
    unpermuted = gguf_lora.write(lora, tmp_path / "unpermuted.gguf", base_arch)
    monkeypatch.undo()
    found = logit_differences(torch_base, clean_engine, lora, unpermuted, PROMPTS, prefix=[])
    assert found["adapted"] <= 1.5 * found["bare"] + 0.05, "llama.cpp with the converted adapter tracks torch+PEFT"
    assert found["effect"] > 5 * found["bare"], "and the adapter changes the output clearly"
    assert found["wrong"] > 4 * found["adapted"], "the q/k permutation is what makes it right"


@pytest.fixture(scope="module")
def planted_style(torch_base, tmp_path_factory):
    """An adapter trained on a user whose approved replies all sign off the same way."""
    from assistant.store import open_database

    home = tmp_path_factory.mktemp("style")
    db = open_database(home / "myna.db")
    plant(db)
    example_set = examples.from_store(db)
    config = trainer.TrainConfig(learning_rate=2e-3, epochs=3, max_length=128, batch_size=4)
    result = trainer.train(torch_base, example_set, config, system=SYSTEM, workdir=home / "work", min_examples=8)
    return example_set, result


def test_training_raises_the_likelihood_of_the_style_on_held_out_prompts(planted_style):
    example_set, result = planted_style
    assert len(example_set.held_out) == 6
    assert result.held_out_before > 2.0
    assert result.held_out_after < 0.5 * result.held_out_before
    assert result.losses[-1] < result.losses[0]


def test_llama_cpp_with_the_converted_adapter_reproduces_the_style(planted_style, clean_engine, base_arch, tmp_path):
    example_set, result = planted_style
    path = gguf_lora.write(result.lora, tmp_path / "style.gguf", base_arch)

    def measure():
        sign_off_logprobs, signed = [], 0
        for example in example_set.held_out:
            prompt = clean_engine.tokenize_chat(
                [{"role": "system", "content": SYSTEM}, {"role": "user", "content": example.input}]
            )
            answer = clean_engine.tokenize(example.output.split("\n\n")[0] + "\n\n")
            sign_off_logprobs.append(clean_engine.logprobs(prompt + answer, clean_engine.tokenize(SIGN_OFF)).sum())
            reply = clean_engine.generate(prompt, SamplingParams(max_tokens=40, temperature=0), lambda piece: None)
            signed += SIGN_OFF in reply.text
        return np.mean(sign_off_logprobs), signed

    bare_logprob, bare_signed = measure()
    clean_engine.set_adapters([AdapterUse(path)])
    adapted_logprob, adapted_signed = measure()
    print(
        f"sign-off log-probability: bare {bare_logprob:.1f}, adapted {adapted_logprob:.1f}; "
        f"signed replies {bare_signed} -> {adapted_signed} of {len(example_set.held_out)}"
    )
    assert adapted_logprob > bare_logprob + 20
    assert bare_signed == 0 and adapted_signed >= 4


def test_training_is_deterministic_and_resumes_exactly(torch_base, tmp_path):
    made = [
        examples.Example(f"Say something about the number {i}.", f"The number {i} is my favourite.", "note")
        for i in range(20)
    ]
    example_set = examples.split(made)
    config = trainer.TrainConfig(rank=2, epochs=2, max_length=48, batch_size=4, checkpoint_every=2, learning_rate=1e-3)
    whole = trainer.train(torch_base, example_set, config, system="", workdir=tmp_path / "a", min_examples=8)
    steps = []
    with pytest.raises(trainer.TrainingStopped, match="run `myna train` again to continue"):
        trainer.train(
            torch_base,
            example_set,
            config,
            system="",
            workdir=tmp_path / "b",
            min_examples=8,
            on_step=lambda step, total, loss: steps.append(step),
            should_stop=lambda: len(steps) >= 3,
        )
    resumed = trainer.train(torch_base, example_set, config, system="", workdir=tmp_path / "b", min_examples=8)
    assert resumed.resumed_from == 3 and resumed.steps == whole.total_steps - 3
    for key, (a, b) in whole.lora.weights.items():
        np.testing.assert_allclose(resumed.lora.weights[key][0], a, atol=1e-6)
        np.testing.assert_allclose(resumed.lora.weights[key][1], b, atol=1e-6)
    assert whole.losses == pytest.approx(resumed.losses, abs=1e-6)
    # On top of an adapter (OPPU on a merge): training starts where that adapter is.
    on_top = trainer.train(
        torch_base, example_set, config, system="", workdir=tmp_path / "c", min_examples=8, start_from=whole.lora
    )
    assert on_top.held_out_before == pytest.approx(whole.held_out_after, rel=1e-2)
    assert on_top.held_out_before < whole.held_out_before


def test_memory_guard_shrinks_the_batch_or_refuses():
    config = trainer.TrainConfig(batch_size=8, max_length=256)
    assert trainer.micro_batch_size(config, available=64e9) == 8
    assert 1 <= trainer.micro_batch_size(config, available=2.5e9) < 8
    with pytest.raises(Exception, match="free memory"):
        trainer.micro_batch_size(config, available=0.5e9)


# -- the command, in a subprocess ------------------------------------------------------------------


def gguf_digest(db):
    return hashlib.sha256(adapters.active(db).gguf.read_bytes()).hexdigest()


def test_myna_train_publishes_and_answers_use_it(myna_home, session_home, db):
    from assistant.store import conversations as convs

    plant(db)
    share_torch_cache(session_home, myna_home)
    env = run_env(myna_home)
    trained = run_watched([MYNA, "train", "--epochs", "1", "--max-length", "96"], env=env, text=True)
    assert trained.returncode == 0, trained.stderr
    assert "Warning" not in trained.stderr, "library notices are not for the user"
    assert "Trained 'personal'" in trained.stdout and "It is now the active adapter." in trained.stdout
    active = adapters.active(db)
    assert active.name == "personal" and active.card["data"]["by_origin"] == {"chat": 30}
    assert active.card["metrics"]["held_out_nll_after"] < active.card["metrics"]["held_out_nll_before"]
    asked = subprocess.run(
        [MYNA, "ask", "--max-tokens", "8", "Hello"], env=env, capture_output=True, text=True, timeout=120
    )
    assert asked.returncode == 0, asked.stderr
    conv = convs.latest_conversation_id(db)
    assert convs.messages(db, conv)[-1].adapter == "personal"


def test_a_killed_training_run_leaves_the_active_adapter_intact_and_resumes(myna_home, session_home, db):
    plant(db)
    share_torch_cache(session_home, myna_home)
    env = run_env(myna_home)
    args = ["train", "--epochs", "2", "--max-length", "96", "--batch-size", "2", "--name", "second"]
    first = run_watched([MYNA, "train", "--epochs", "1", "--max-length", "64"], env=env, text=True)
    assert first.returncode == 0, first.stderr
    before = gguf_digest(db)

    proc = subprocess.Popen(
        [MYNA, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    checkpoint = myna_home / "training" / "checkpoint.json"
    hang_guard = time.monotonic() + 1800  # progress (the checkpoint) decides, not the clock
    while not checkpoint.exists() and time.monotonic() < hang_guard and proc.poll() is None:
        time.sleep(0.2)
    assert checkpoint.exists(), proc.stderr.read() if proc.poll() is not None else "no checkpoint in time"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    assert adapters.active(db).name == "personal", "a killed run publishes nothing"
    assert gguf_digest(db) == before, "and leaves the active adapter's files untouched"
    assert [a.name for a in adapters.listing(db)] == ["personal"]

    again = run_watched([MYNA, *args], env=env, text=True)
    assert again.returncode == 0, again.stderr
    assert "resumed at step" in again.stdout
    assert adapters.active(db).name == "second"
    assert not checkpoint.exists()
