"""Random bytes and random Unicode into every door text comes in by (Hypothesis, seeded).

Each property: no traceback, only Myna's one-sentence errors, and a rejected input changes
nothing in the store. `pytest --long` runs 600 examples per property instead of 40.
"""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import example, given
from hypothesis import strategies as st

from assistant import input_text, settings
from assistant.errors import MynaError
from tests.test_security import GOOD as VALID_ENTRY
from tui.cli.base import Runtime
from tui.cli.main import cli

# Text as hostile as Python strings get: surrogates, NULs, controls, right-to-left marks.
nasty_text = st.text(
    alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()),
    max_size=300,
) | st.sampled_from(["\u202egnp.exe", "\x00", "\ud800", "a\udcff b", "\u0000" * 5, "\ufeff#", "x" * 1_000_000])
as_argument = st.binary(max_size=300).map(lambda b: b.decode("utf-8", "surrogateescape"))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | nasty_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(nasty_text, inner, max_size=4),
    max_leaves=12,
)


def counts(db) -> tuple[int, ...]:
    return tuple(
        db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        for table in ("conversations", "messages", "snippets", "sources", "settings", "adapters")
    )


@given(nasty_text)
@example("a\udcff\x00b")
def test_cleaned_text_is_text_every_part_of_myna_accepts(text):
    cleaned = input_text.clean(text)
    cleaned.text.encode("utf-8")  # no surrogate left
    assert "\x00" not in cleaned.text
    assert input_text.clean(cleaned.text) == input_text.Cleaned(cleaned.text, 0)
    assert (cleaned.replaced == 0) == (cleaned.text == text)


@given(argument=as_argument | nasty_text, piped=st.binary(max_size=400))
def test_ask_takes_any_argument_or_pipe(fake_engine, db, monkeypatch, argument, piped):
    monkeypatch.setattr(Runtime, "engine", lambda self: fake_engine)
    fake_engine.context_size = 4096
    for args, stdin in ((["ask", argument], b""), (["ask"], piped)):
        before = counts(db)
        fake_engine.queue("fine")
        result = CliRunner().invoke(cli, args, input=stdin)
        # 1: Myna refused the question; 2: click's usage error (an argument such as "-x").
        assert result.exit_code in (0, 1, 2), result.output
        assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
        if result.exit_code:
            assert counts(db) == before, "a refused question stores nothing"
            assert result.stderr.splitlines()[-1].startswith("Error: ")
        if result.exit_code == 1:
            assert result.stderr.count("\n") == 1


@given(key=st.sampled_from(settings.names()) | nasty_text, value=as_argument | nasty_text)
def test_config_set_takes_any_key_and_value(db, key, value):
    before = counts(db)
    try:
        settings.set_value(db, key, value)
    except MynaError:
        assert counts(db) == before
    else:
        settings.load(db)  # what was stored loads again
        settings.unset(db, key)


@pytest.mark.real
@given(
    content=st.binary(max_size=2000) | nasty_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
    suffix=st.sampled_from([".txt", ".md", ".eml", ".jsonl", ".json"]),
)
def test_import_takes_any_file_of_each_kind(db, content, suffix):
    from assistant.memory import ingest

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(content)
        before = counts(db)
        report = ingest.import_paths(db, [path])
    if report.errors:
        assert counts(db) == before and len(report.errors) == 1
    for (text,) in db.execute("SELECT text FROM snippets"):
        text.encode("utf-8")
        assert "\x00" not in text
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.real
@given(query=nasty_text | as_argument, mode=st.sampled_from(["hybrid", "bm25", "embeddings"]))
def test_memory_search_takes_any_query(memory_db, query, mode):
    from assistant.memory import recall, retrieval

    retrieval.search(memory_db, query, k=3, mode=mode)
    recall.recall(memory_db, query, k=2, mode=mode)


@pytest.fixture
def memory_db(db, tmp_path):
    from assistant.memory import ingest

    notes = tmp_path / "notes.md"
    notes.write_text("The basil moved to the kitchen window.\n\nMy dentist appointment is on Tuesday.\n")
    ingest.import_paths(db, [notes])
    return db


@given(
    index=json_values
    | st.fixed_dictionaries({"format": st.just("myna-hub/1"), "adapters": st.lists(json_values, max_size=3)})
    | st.tuples(st.sampled_from(sorted(VALID_ENTRY)), json_values).map(
        lambda change: {"format": "myna-hub/1", "adapters": [{**VALID_ENTRY, change[0]: change[1]}]}
    )
)
@example({"format": "myna-hub/1", "adapters": [VALID_ENTRY]})
def test_a_hub_index_is_either_refused_or_safe_to_use(index):
    from assistant.adapters import SAFE_NAME
    from merger.hub import client as hub

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "index.json").write_text(json.dumps(index))
        try:
            opened = hub.open_hub(folder)
        except MynaError:
            return
    for entry in opened.entries:
        assert SAFE_NAME.fullmatch(entry.name)
        assert not entry.file.startswith("/") and ".." not in entry.file.split("/")
        assert len(entry.sha256) == 64 and set(entry.sha256) <= set("0123456789abcdef")
        entry.description.encode("utf-8")


@given(st.binary(max_size=600))
def test_the_gguf_structure_check_takes_any_bytes(data):
    from assistant import gguf_file

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.gguf"
        path.write_bytes(data)
        assert gguf_file.problem(path) is not None
        path.write_bytes(b"GGUF" + data)
        gguf_file.problem(path)  # a sentence or None, never an exception


@pytest.fixture(scope="module")
def adapter_file(base_arch, tmp_path_factory) -> Path:
    from merger.formats import gguf_lora
    from merger.formats.lora import random_lora

    path = tmp_path_factory.mktemp("fuzz-adapter") / "a.gguf"
    return gguf_lora.write(random_lora(base_arch, rank=2, modules=("attn_v",)), path, base_arch)


@pytest.mark.real
@given(position=st.integers(min_value=0, max_value=4000), junk=st.binary(min_size=1, max_size=64), cut=st.booleans())
def test_a_damaged_gguf_adapter_gets_one_sentence(adapter_file, base_arch, position, junk, cut):
    from merger.formats import bridge

    adapter_bytes = adapter_file.read_bytes()
    data = adapter_bytes[:position] if cut else adapter_bytes[:position] + junk + adapter_bytes[position + len(junk) :]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "a.gguf"
        path.write_bytes(data)
        try:
            bridge.load(path, base_arch)
        except MynaError:
            pass


@pytest.mark.real
@given(header=json_values, length=st.integers(min_value=0, max_value=2**40), body=st.binary(max_size=200))
def test_a_damaged_safetensors_adapter_gets_one_sentence(base_arch, header, length, body):
    from merger.formats import bridge

    encoded = json.dumps(header).encode("utf-8", "surrogatepass")
    with tempfile.TemporaryDirectory() as folder:
        for declared in (len(encoded), length):
            path = Path(folder) / "adapter_model.safetensors"
            path.write_bytes(struct.pack("<Q", declared) + encoded + body)
            try:
                bridge.load(path, base_arch)
            except MynaError:
                pass
