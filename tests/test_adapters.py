"""Adapters without torch: the registry, the bridge's formats and refusals, examples, export."""

import json
import pickle

import numpy as np
import pytest

from assistant import adapters
from assistant.errors import MynaError
from assistant.replies import sync_adapter
from merger.data import examples
from merger.formats import bridge, gguf_lora, publish
from merger.formats.base_model import Architecture
from merger.formats.lora import random_lora
from tests.fakes import FakeEngine

ARCH = Architecture(
    fingerprint="f" * 64, n_layers=2, hidden=64, ffn=128, n_heads=4, n_kv_heads=2, head_dim=16, vocab=100
)


def small_lora(seed=0, modules=("attn_q", "attn_k", "attn_v")):
    return random_lora(ARCH, rank=4, seed=seed, modules=modules)


def make(db, name="personal", activate=True, seed=0):
    return publish.publish(
        db,
        small_lora(seed),
        ARCH,
        stem=name,
        kind="personal",
        card={"kind": "personal"},
        activate=activate,
        reason="test",
    )


# -- registry ----------------------------------------------------------------------------------


def test_publish_registers_activates_and_keeps_history(db):
    first = make(db)
    assert adapters.active(db).name == "personal"
    assert first.gguf.is_file() and (first.folder / bridge.PEFT_WEIGHTS).is_file()
    second = make(db)
    assert second.name == "personal-2", "names never collide"
    assert adapters.active(db).name == "personal-2"
    adapters.activate(db, "personal", "back to the first")
    adapters.activate(db, None, "bare model")
    assert adapters.active(db) is None
    assert [h.adapter_name for h in adapters.history(db)] == [None, "personal", "personal-2", "personal"]


def test_deleting_the_active_adapter_falls_back_to_none(db):
    made = make(db)
    adapters.delete(db, "personal")
    assert adapters.active(db) is None
    assert not made.folder.exists()
    assert adapters.history(db)[0].reason == "'personal' deleted"
    with pytest.raises(MynaError, match="no adapter called"):
        adapters.get(db, "personal")


def test_register_refuses_incomplete_files(db, tmp_path):
    with pytest.raises(MynaError, match="incomplete"):
        adapters.register(
            db,
            name="x",
            kind="personal",
            folder=tmp_path,
            base_fingerprint="f",
            rank=4,
            alpha=4,
            targets=["attn_q"],
            card={},
        )


def test_replies_use_the_active_adapter_and_refuse_another_base_model(db):
    engine = FakeEngine(fingerprint=ARCH.fingerprint)
    assert sync_adapter(db, engine) is None and engine.adapters == []
    make(db)
    assert sync_adapter(db, engine) is None
    assert [a.label for a in engine.adapters] == ["personal"]
    other = FakeEngine(fingerprint="0" * 64)
    notice = sync_adapter(db, other)
    assert "made for another base model" in notice and other.adapters == []


def test_a_new_adapter_is_picked_up_between_replies(db):
    from assistant import replies
    from assistant.settings import Settings
    from assistant.store import conversations as convs

    engine = FakeEngine(fingerprint=ARCH.fingerprint).queue("one", "two")
    first = replies.answer(db, engine, Settings(), "hello")
    make(db)  # published by another process, e.g. `myna train`
    second = replies.answer(db, engine, Settings(), "again", conversation_id=first.conversation_id)
    assert convs.get_message(db, first.message_id).adapter is None
    assert convs.get_message(db, second.message_id).adapter == "personal"


def test_a_failed_publish_leaves_the_previous_adapter_active(db, monkeypatch):
    make(db)
    monkeypatch.setattr(adapters, "register", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        make(db)
    monkeypatch.undo()
    assert adapters.active(db).name == "personal"
    assert adapters.active(db).gguf.is_file()
    assert make(db).name == "personal-2", "the unregistered leftover folder is replaced"


# -- formats -------------------------------------------------------------------------------------


def test_peft_round_trip(tmp_path):
    lora = small_lora()
    bridge.write_peft(lora, tmp_path / "peft")
    back = bridge.read_peft(tmp_path / "peft")
    config = json.loads((tmp_path / "peft" / bridge.PEFT_CONFIG).read_text())
    assert config["target_modules"] == ["k_proj", "q_proj", "v_proj"] and config["r"] == 4
    assert back.base_fingerprint == ARCH.fingerprint
    for key, (a, b) in lora.weights.items():
        assert np.array_equal(back.weights[key][0], a) and np.array_equal(back.weights[key][1], b)


def test_gguf_round_trip_undoes_the_rotary_permutation(tmp_path):
    lora = small_lora()
    path = gguf_lora.write(lora, tmp_path / "a.gguf", ARCH)
    back = gguf_lora.read(path, ARCH)
    for key, (_a, b) in lora.weights.items():
        assert np.array_equal(back.weights[key][1], b), key
    import gguf

    stored = {t.name: np.array(t.data) for t in gguf.GGUFReader(str(path)).tensors}
    q_b = lora.weights["blk.0.attn_q"][1]
    assert not np.array_equal(stored["blk.0.attn_q.weight.lora_b"], q_b), "q rows are stored permuted"
    assert np.array_equal(stored["blk.0.attn_v.weight.lora_b"], lora.weights["blk.0.attn_v"][1]), "v rows are not"


def test_rotary_permutation_pairs_rows_as_llama_cpp_does():
    rows = np.arange(8.0).reshape(8, 1)  # one head of 8 dims: HF order (0..3 | 4..7) -> interleaved
    assert gguf_lora.rotary_permute(rows, 1)[:, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    assert np.array_equal(gguf_lora.rotary_unpermute(gguf_lora.rotary_permute(rows, 1), 1), rows)


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".pth", ".ckpt", ".pkl"])
def test_pickle_files_are_refused_unopened(tmp_path, suffix, monkeypatch):
    path = tmp_path / f"adapter{suffix}"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("never unpickled"))
    with pytest.raises(MynaError, match="pickle file"):
        bridge.load(path, ARCH)


def test_a_pickle_disguised_as_safetensors_is_refused(tmp_path):
    path = tmp_path / "adapter_model.safetensors"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(MynaError, match="pickle file in disguise"):
        bridge.load(path, ARCH)


def test_damaged_files_are_refused(tmp_path):
    bridge.write_peft(small_lora(), tmp_path / "peft")
    weights = tmp_path / "peft" / bridge.PEFT_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:300])
    with pytest.raises(MynaError, match="damaged or truncated"):
        bridge.load(tmp_path / "peft", ARCH)
    path = gguf_lora.write(small_lora(), tmp_path / "a.gguf", ARCH)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(MynaError, match="damaged or truncated"):
        bridge.load(path, ARCH)


def test_an_adapter_for_another_base_model_is_refused(tmp_path):
    other_shapes = Architecture(**{**ARCH.__dict__, "hidden": 80})
    path = gguf_lora.write(random_lora(other_shapes, rank=4), tmp_path / "wide.gguf", other_shapes)
    with pytest.raises(MynaError, match="another base model"):
        bridge.load(path, ARCH)
    other_model = Architecture(**{**ARCH.__dict__, "fingerprint": "0" * 64})
    path = gguf_lora.write(random_lora(other_model, rank=4), tmp_path / "other.gguf", other_model)
    with pytest.raises(MynaError, match="another base model"):
        bridge.load(path, ARCH)


# -- training examples -------------------------------------------------------------------------


def test_chat_examples_come_from_good_and_corrected_replies(db):
    from assistant.store import conversations as convs

    cid = convs.create_conversation(db)
    pairs = [
        ("q1", "good reply", 1, None),
        ("q2", "bad reply", -1, None),
        ("q3", "wrong", -1, "right"),
        ("q4", "plain", None, None),
    ]
    for question, answer, rating, correction in pairs:
        convs.add_message(db, cid, "user", question)
        reply = convs.add_message(db, cid, "assistant", answer)
        if rating is not None or correction:
            convs.set_feedback(db, reply, rating=rating, correction=correction)
    assert [(e.input, e.output) for e in examples.chat_examples(db)] == [("q1", "good reply"), ("q3", "right")]


def test_lamp_profiles_become_task_pairs(db, tmp_path):
    from assistant.memory import ingest
    from assistant.tasks import prompt
    from tests.memory_data import write_lamp

    for task in ("LaMP_2", "LaMP_3", "LaMP_4", "LaMP_7"):
        write_lamp(tmp_path / f"{task}.json", task)
    ingest.import_paths(db, [tmp_path])
    found = {(e.origin, e.input): e.output for e in examples.from_store(db, held_out_fraction=0).train}
    assert found[("lamp article", prompt("LaMP_4", text="Winds reached 100 km/h."))] == "Storm number 0 hits coast"
    assert found[("lamp review", prompt("LaMP_3", text="Great blender number 0, very loud"))] == "4"
    assert found[("lamp movie tag", prompt("LaMP_2", description="A heist film number 0 in Paris"))] == "crime"
    assert (
        found[("lamp post", prompt("LaMP_7", text="morning run number 0 done, feeling great"))]
        == "Morning run number 0 done, feeling great"
    )


def test_split_is_deterministic_and_disjoint():
    made = [examples.Example(f"in {i}", f"out {i}", "note") for i in range(50)]
    first, again = examples.split(made, seed=1), examples.split(list(reversed(made)), seed=1)
    assert [e.key for e in first.held_out] == [e.key for e in again.held_out]
    assert len(first.held_out) == 10 and not {e.key for e in first.held_out} & {e.key for e in first.train}


def test_too_little_history_says_how_much_more(db):
    with pytest.raises(MynaError, match=r"gives 0 training examples; training needs at least 16 \(16 more\)"):
        examples.require_enough(examples.from_store(db))


def test_deleted_memories_are_not_trained_on(db, tmp_path):
    from assistant.memory import ingest
    from assistant.memory import store as memory_store

    (tmp_path / "n.md").write_text("# Secret plans\n\n" + "word " * 40)
    ingest.import_paths(db, [tmp_path / "n.md"])
    assert examples.from_store(db, held_out_fraction=0).train
    memory_store.delete(db, [s.id for s in memory_store.listing(db)])
    assert examples.from_store(db, held_out_fraction=0).train == []


def test_examples_carry_memory_but_never_their_own_record(db, tmp_path):
    """Trained as chat is served: each headline example sees other articles as demonstrations,
    never its own (it would learn to look the answer up, not to write it)."""
    from assistant.memory import ingest
    from assistant.settings import Settings
    from assistant.tasks import prompt
    from merger.data.encoding import encode_example
    from tests.fakes import FakeEngine

    profile = [
        {
            "id": str(i),
            "title": f"Storm number {i} hits the coast",
            "text": f"Winds of {100 + i} km/h closed coast roads on day {i}.",
        }
        for i in range(6)
    ]
    (tmp_path / "q.json").write_text(json.dumps([{"id": "1", "input": prompt("LaMP_4", text="x"), "profile": profile}]))
    ingest.import_paths(db, [tmp_path / "q.json"])
    settings = Settings(retrieval_top_k=2)
    made = examples.from_store(db, held_out_fraction=0, memory=settings).train
    assert len(made) == 6
    for example in made:
        assert len(example.memory) == 2 and example.layout == "demos"
        assert not set(example.own) & {i for m in example.memory for i in m.ids}, "its own record is not its memory"
        assert all(example.output not in m.text for m in example.memory)

    class Words(FakeEngine):
        end_of_turn = -1
        vocabulary: dict = {}

        def text_ids(self, text):
            return [self.vocabulary.setdefault(w, len(self.vocabulary)) for w in text.split()]

        def chat_ids(self, chat):
            self.prompts.append(chat)
            return [i for m in chat for i in self.text_ids(m["role"] + " " + m["content"])]

    encoder = Words()
    encoded = encode_example(encoder, made[0], "sys", max_length=200)
    chat = encoder.prompts[-1]
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert chat[-1]["content"] == made[0].input
    assert encoded.output == encoder.text_ids(made[0].output) + [-1]
    short = encode_example(encoder, made[0], "sys", max_length=40)
    assert [m["role"] for m in encoder.prompts[-1]] == ["system", "user"], "no room: trained without memory"
    assert short.output == encoded.output


def test_grounding_pairs_are_cloze_over_notes_given_as_memory(db, tmp_path):
    from assistant.memory import ingest
    from bench import grounding

    notes = [
        "Bike lock combo is 7391, same as the old one reversed.",
        "The neighbours' beagle is called Biscuit.",
        "Moved the basil to the kitchen windowsill because the balcony got cold.",
    ]
    (tmp_path / "n.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in notes))
    ingest.import_paths(db, [tmp_path / "n.jsonl"])
    made = {e.output: e for e in grounding.grounding_examples(examples.records(db), 10)}
    assert set(made) == {"7391", "Biscuit", "windowsill"}
    lock = made["7391"]
    assert lock.input == 'Fill in the blank from my notes: "Bike lock combo is ___, same as the old one reversed."'
    assert [m.text for m in lock.memory] == [notes[0]], "the note that holds the answer is what it is given"
    assert grounding.cloze("too short") is None


# -- export ----------------------------------------------------------------------------------------


def test_export_writes_both_formats_and_a_data_card(db, tmp_path):
    from click.testing import CliRunner

    from tui.cli.main import cli

    make(db)
    out = tmp_path / "out"
    refused = CliRunner().invoke(cli, ["export", "-o", str(out)], input="n\n")
    assert refused.exit_code == 1 and not out.exists(), "nothing leaves without a yes"
    done = CliRunner().invoke(cli, ["export", "-o", str(out)], input="y\n")
    assert done.exit_code == 0, done.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["adapter.gguf", "adapter_model.safetensors", "adapter_config.json", "card.json", "DATA_CARD.md"]
        + ["Modelfile", "serve.sh"]
    )
    # This adapter's base model is not on this machine: the Modelfile says where it must go.
    assert any(line.startswith("FROM /path/to/") for line in (out / "Modelfile").read_text().splitlines())
    assert bridge.load(out / "adapter.gguf", ARCH).rank == 4
    assert bridge.load(out, ARCH).rank == 4
    assert "# Data card: personal" in (out / "DATA_CARD.md").read_text()


# -- the privacy audit on the card ---------------------------------------------------------------


def test_membership_inference_is_read_against_the_base_model_and_chance():
    from merger.data import membership

    assert membership.auroc([2, 3], [0, 1]) == 1.0 and membership.auroc([1], [1]) == 0.5
    assert membership.chance_spread(16) == pytest.approx((33 / (12 * 256)) ** 0.5)
    assert membership.chance_spread(16, 4) > membership.chance_spread(16), "fewer held-out items, wider spread"
    assert membership.spread(list(range(100)), 5) == [0, 25, 50, 74, 99]
    # Members the adapter learned (their loss fell) and held-out items it did not.
    learned = membership.measure(([3.0, 3.1, 2.9], [3.0, 3.2]), ([1.0, 1.2, 1.1], [2.9, 3.1]))
    assert learned.auroc == 1.0 and learned.reference == 0.75 and (learned.members, learned.others) == (3, 2)
    card = publish.card_markdown("p", {"kind": "personal", "privacy": "Private.", "privacy_audit": learned.as_card()})
    assert "AUROC **1.00** on 3 trained-on texts against 2 held-out" in card and "base model alone" in card
    assert "no measurable sign" in card, "five texts cannot show it: chance alone spreads the figure by 0.29"
    many = membership.measure(([3.0] * 16, [3.0] * 16), ([1.0] * 16, [3.0] * 16))
    assert (many.auroc, many.reference) == (1.0, 0.5)
    assert "whoever holds the adapter can tell" in publish.card_markdown("p", {"privacy_audit": many.as_card()})
    nothing = membership.measure(([3.0, 3.1], [3.0, 3.1]), ([2.0, 2.1], [2.0, 2.1]))
    assert "no measurable sign" in publish.card_markdown("p", {"kind": "personal", "privacy_audit": nothing.as_card()})
    assert "not measured" in publish.card_markdown("p", {"kind": "personal"})
