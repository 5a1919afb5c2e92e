"""Memory on real embeddings (the packaged all-MiniLM-L6-v2) and a real SQLite database."""

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from assistant.errors import MynaError
from assistant.memory import beside, chunking, ingest, readers, retrieval, store, told
from assistant.memory import index as vectors
from tests.memory_data import EML_HTML, EML_PLAIN, distractors, write_lamp


def snippets(db):
    return store.listing(db, limit=100_000)


# -- embeddings --------------------------------------------------------------------------------


@pytest.mark.real
def test_onnx_embedder_matches_sentence_transformers():
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from assistant.embeddings import embedder, model_dir

    texts = ["I am allergic to peanuts.", "Quarterly report due Friday " * 80, "é ü 漢字 emoji 🙂", "x", ""]
    texts += [f"Note {i}: the meeting moved to room {i * 7}." for i in range(40)]  # more than one batch
    ours = embedder().embed(texts)
    reference = SentenceTransformer(str(model_dir()), device="cpu").encode(texts, normalize_embeddings=True)
    assert ours.shape == (len(texts), 384) and ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 1e-4
    assert np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)
    # One text alone gets the vector it got in a batch: padding changes nothing.
    assert np.abs(embedder().embed([texts[0]])[0] - ours[0]).max() < 1e-5


@pytest.mark.real
def test_the_onnx_export_is_made_once_atomically_and_reported_when_it_fails(tmp_path, monkeypatch):
    from assistant import embeddings

    monkeypatch.setenv("MYNA_CACHE", str(tmp_path / "cache"))
    # Exports an earlier install of the model package made: the stale one goes with the new
    # export, a recent one (another install may use it) and other files stay.
    (tmp_path / "cache").mkdir()
    stale, recent, other = (tmp_path / "cache" / name for name in ("all-MiniLM-L6-v2-1-2.onnx", "all-MiniLM-L6-v2-3-4.onnx", "notes.onnx"))  # fmt: skip
    for path, days in ((stale, 31), (recent, 29), (other, 99)):
        path.write_bytes(b"old")
        os.utime(path, (time.time() - days * 86400,) * 2)
    made = embeddings.onnx_file()
    assert made.is_file() and made.parent == tmp_path / "cache"
    assert sorted(p.name for p in made.parent.iterdir()) == sorted([made.name, recent.name, other.name])
    recent.unlink()
    other.unlink()  # and no partial file is left behind:
    assert [p.name for p in made.parent.iterdir()] == [made.name]
    stamp = made.stat().st_mtime_ns
    assert embeddings.onnx_file() == made and made.stat().st_mtime_ns == stamp  # reused, not redone
    vector = embeddings.MiniLM(made).embed(["I am allergic to peanuts."])
    assert vector.shape == (1, 384)

    made.unlink()
    monkeypatch.setattr(embeddings.sys, "executable", "/bin/false")  # the export process fails
    with pytest.raises(MynaError, match="Could not prepare the embedding model.*myna models check"):
        embeddings.onnx_file()
    assert list(made.parent.iterdir()) == []


# -- importing ---------------------------------------------------------------------------------


def test_import_text_markdown_and_folder(db, tmp_path):
    notes = tmp_path / "notes"
    (notes / "deep").mkdir(parents=True)
    (notes / "food.md").write_text("# Food\n\nI am allergic to peanuts.\n\nI love green curry.")
    (notes / "deep" / "work.txt").write_text("I work as a marine biologist in Lisbon.")
    (notes / "photo.jpg").write_bytes(b"\xff\xd8\xff binary")
    (notes / ".hidden.txt").write_text("secret editor backup")
    report = ingest.import_paths(db, [notes])
    assert len(report.imported) == 2 and report.errors == []
    assert any("skipped 1 files" in note for note in report.notes)
    texts = {s.text for s in snippets(db)}
    # One record per paragraph (readers.notes_of): the heading stays with the first.
    assert texts == {
        "# Food\nI am allergic to peanuts.",
        "I love green curry.",
        "I work as a marine biologist in Lisbon.",
    }
    assert {s.origin for s in snippets(db)} == {"food.md", "work.txt"}
    assert all(s.kind == "note" and s.date for s in snippets(db))


def test_import_emails(db, tmp_path):
    (tmp_path / "a.eml").write_text(EML_PLAIN)
    (tmp_path / "b.eml").write_text(EML_HTML)
    ingest.import_paths(db, [tmp_path / "a.eml", tmp_path / "b.eml"])
    by_date = {s.date: s for s in snippets(db)}
    dinner, order = by_date["2024-05-14"], by_date["2024-05-15"]
    assert dinner.kind == "email"
    assert dinner.text.startswith("Subject: Dinner on Friday\n") and "Georgian place" in dinner.text
    assert "quoted earlier" not in dinner.text
    assert "hiking boots has shipped & arrives Monday" in " ".join(order.text.split())
    assert "<b>" not in order.text


def test_import_jsonl(db, tmp_path):
    path = tmp_path / "posts.jsonl"
    path.write_text(
        json.dumps({"text": "Ran 10 km today", "date": "2024-04-01", "kind": "post"})
        + "\n\n"
        + json.dumps({"text": "Bought a kayak"})
        + "\n"
    )
    ingest.import_paths(db, [path])
    found = {s.text: s for s in snippets(db)}
    assert (found["Ran 10 km today"].kind, found["Ran 10 km today"].date) == ("post", "2024-04-01")
    assert (found["Bought a kayak"].kind, found["Bought a kayak"].date) == ("note", None)


@pytest.mark.parametrize(
    "task, kind, expected",
    [
        ("LaMP_2", "lamp movie tag", "A heist film number 0 in Paris\nTag: crime"),
        ("LaMP_3", "lamp review", "Great blender number 0, very loud\nRating: 4"),
        ("LaMP_4", "lamp article", "Storm number 0 hits coast\nWinds reached 100 km/h."),
        ("LaMP_7", "lamp post", "Morning run number 0 done, feeling great"),
    ],
)
def test_import_lamp_questions_files(db, tmp_path, task, kind, expected):
    path = tmp_path / f"{task}_questions.json"
    distinct = write_lamp(path, task)
    ingest.import_paths(db, [path])
    found = snippets(db)
    assert len(found) == distinct, "profiles repeated across questions are imported once"
    assert {s.kind for s in found} == {kind}
    assert expected in {s.text for s in found}
    if task == "LaMP_4":
        assert {s.date for s in found} >= {"2019-03-01", "2019-03-02"}


def test_reimport_adds_nothing_and_a_changed_file_replaces_its_old_version(db, tmp_path):
    path = tmp_path / "diary.txt"
    path.write_text("Monday: started learning Portuguese.")
    ingest.import_paths(db, [path])
    again = ingest.import_paths(db, [path])
    assert again.snippets == 0 and again.unchanged == [str(path.resolve())]
    assert len(snippets(db)) == 1

    path.write_text("Monday: started learning Portuguese.\n\nTuesday: first lesson, verbs are hard.")
    changed = ingest.import_paths(db, [path])
    assert changed.replaced == [str(path.resolve())]
    assert len(store.sources(db)) == 1
    assert {s.text for s in snippets(db)} == {
        "Monday: started learning Portuguese.",
        "Tuesday: first lesson, verbs are hard.",
    }
    # the first version's vectors went with it: nothing is left that no snippet uses
    assert db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 2


def test_interrupted_import_resumes_without_duplicates(db, tmp_path, monkeypatch):
    monkeypatch.setattr(ingest, "BATCH", 3)
    path = tmp_path / "long.txt"
    path.write_text("\n\n".join(distractors(200)))
    pieces = sum(len(chunking.split(note)) for note in readers.notes_of(path.read_text()))
    assert pieces > 9
    calls = []

    def interrupt_after_two_batches(done, total, name):
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest.import_paths(db, [path], on_progress=interrupt_after_two_batches)
    partial = snippets(db)
    assert len(partial) == 6, "the two finished batches are kept"
    assert store.sources(db)[0].status == "importing"

    report = ingest.import_paths(db, [path])
    assert report.snippets == pieces - len(partial)
    final = snippets(db)
    positions = [row[0] for row in db.execute("SELECT position FROM snippets ORDER BY position")]
    assert positions == list(range(len(final))), "every piece once, none twice"
    assert store.sources(db)[0].status == "complete"
    assert vectors.missing(db) == []


# -- bad input ---------------------------------------------------------------------------------


def test_bad_files_are_named_and_nothing_stored_is_lost(db, tmp_path):
    good = tmp_path / "keep.txt"
    good.write_text("A memory that must survive.")
    ingest.import_paths(db, [good])

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "binary.txt").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "bad" / "broken.jsonl").write_text('{"text": "fine"}\n{"text": "oops"\n')
    (tmp_path / "bad" / "truncated.json").write_text('[{"id": "q1", "input": "x", "profile": [{"id": "1", "te')
    (tmp_path / "bad" / "noprofile.json").write_text('[{"id": "q1", "input": "x", "profile": []}, {"id": "q2"}]')
    (tmp_path / "bad" / "outputs.json").write_text('{"task": "LaMP_4", "golds": []}')
    big = tmp_path / "bad" / "huge.txt"
    with open(big, "wb") as handle:
        handle.truncate(50 * 2**20)  # a 50 MB file, sparse: instant to make
    report = ingest.import_paths(db, [tmp_path / "bad"])
    errors = "\n".join(report.errors)
    assert "binary.txt looks like a binary file" in errors
    assert "broken.jsonl, line 2: not valid JSON" in errors
    assert "truncated.json is not valid JSON (line 1, column" in errors and "truncated" in errors
    assert "noprofile.json, record 2 (id q2): has no 'profile' list" in errors
    assert "outputs.json is a LaMP outputs file" in errors
    assert "huge.txt is 50 MB, more than the 16 MB" in errors and "--max-size 51" in errors
    assert len(report.errors) == 6
    assert [s.text for s in snippets(db)] == ["A memory that must survive."]


def test_two_files_with_the_same_text_in_one_import(db, tmp_path):
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text("My cat Miso sleeps in the garden.")
    report = ingest.import_paths(db, [tmp_path / "a.txt", tmp_path / "b.txt"])
    assert report.snippets == 1 and not report.errors
    assert any("b.txt has the same content as" in note and "imported once" in note for note in report.notes)
    assert [s.text for s in store.listing(db)] == ["My cat Miso sleeps in the garden."]


def test_wrong_encoding_is_read_and_said(db, tmp_path):
    path = tmp_path / "old.txt"
    path.write_bytes("Café in Zürich, naïve résumé".encode("cp1252"))
    report = ingest.import_paths(db, [path])
    assert snippets(db)[0].text == "Café in Zürich, naïve résumé"
    assert any("not UTF-8" in note and "Windows-1252" in note for note in report.notes)


def test_utf16_with_bom(db, tmp_path):
    path = tmp_path / "win.txt"
    path.write_bytes("Notes from Windows: ñandú".encode("utf-16"))
    ingest.import_paths(db, [path])
    assert snippets(db)[0].text == "Notes from Windows: ñandú"


def test_empty_folder_and_missing_path(db, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MynaError, match="nothing to import"):
        ingest.import_paths(db, [tmp_path / "empty"])
    with pytest.raises(MynaError, match="does not exist"):
        ingest.import_paths(db, [tmp_path / "nope"])


# -- retrieval ---------------------------------------------------------------------------------


@pytest.fixture
def crowded(db, tmp_path):
    """Two planted memories among 300 distractors on other topics."""
    path = tmp_path / "journal.jsonl"
    lines = [json.dumps({"text": text}) for text in distractors(300)]
    lines.insert(137, json.dumps({"text": "I am allergic to peanuts, even a trace makes me ill."}))
    lines.insert(222, json.dumps({"text": "Reminder: the warranty code for the dishwasher is QX-7781."}))
    path.write_text("\n".join(lines))
    ingest.import_paths(db, [path])
    return db


def test_finds_by_meaning_without_shared_words(crowded):
    query = "Which foods could give me a bad reaction?"
    hits = retrieval.search(crowded, query, k=3, mode="embeddings")
    assert "peanuts" in hits[0].snippet.text
    assert not retrieval.bm25(crowded, query) or all(
        "peanuts" not in s.text for s in store.get_many(crowded, [i for i, _ in retrieval.bm25(crowded, query)])
    ), "keywords alone cannot find it: no word in common"
    assert "peanuts" in retrieval.search(crowded, query, k=3, mode="hybrid")[0].snippet.text


def test_finds_by_keyword(crowded):
    hits = retrieval.search(crowded, "QX-7781", k=1, mode="bm25")
    assert "QX-7781" in hits[0].snippet.text
    assert "QX-7781" in retrieval.search(crowded, "QX-7781", k=3, mode="hybrid")[0].snippet.text


def test_recency_prefers_newer_snippets(db, tmp_path):
    path = tmp_path / "cars.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"text": "My car is a red Fiat Panda.", "date": "2015-06-01"}),
                json.dumps({"text": "My car is a blue Toyota Yaris.", "date": "2024-06-01"}),
            ]
        )
    )
    ingest.import_paths(db, [path])
    plain = retrieval.search(db, "my car is a red Fiat Panda", k=2)
    recent = retrieval.search(db, "my car is a red Fiat Panda", k=2, recency=1.0)
    assert "Fiat" in plain[0].snippet.text, "without recency the closer match wins"
    assert "Toyota" in recent[0].snippet.text, "with full recency the nine-year-old note loses"


def test_vector_index_follows_appends_edits_and_deletes(db, tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("The lighthouse keeper lives on a rocky island.")
    ingest.import_paths(db, [a])
    assert retrieval.dense(db, "lighthouse on an island")[0][0] == snippets(db)[0].id
    b = tmp_path / "b.txt"
    b.write_text("My grandmother bakes bread every Sunday morning.")
    ingest.import_paths(db, [b])
    index = vectors.index_for(db)
    top = retrieval.dense(db, "baking bread at the weekend")[0][0]
    assert store.get(db, top).text.startswith("My grandmother")
    assert len(index.ids) == 2
    store.edit(db, top, "My grandfather repairs old clocks.")
    assert store.get(db, retrieval.dense(db, "fixing antique clocks")[0][0]).text.startswith("My grandfather")
    store.delete(db, [top])
    assert [i for i, _ in retrieval.dense(db, "fixing antique clocks")] == [snippets(db)[0].id]


def test_hybrid_search_runs_its_two_lists_side_by_side_with_the_same_result(db, tmp_path, monkeypatch):
    notes = ["The lighthouse keeper lives on a rocky island.", "My grandmother bakes bread on Sundays."]
    notes += [f"Meeting notes, week {i}: the budget for bread is unchanged." for i in range(6)]
    (tmp_path / "a.txt").write_text("\n\n".join(notes))
    ingest.import_paths(db, [tmp_path / "a.txt"])
    query = "who bakes bread"
    assert retrieval.both(db, query) == (retrieval.bm25(db, query), retrieval.dense(db, query))
    monkeypatch.setattr(retrieval, "PARALLEL_FROM", 0)  # side by side, as in a large memory
    assert retrieval.both(db, query) == (retrieval.bm25(db, query), retrieval.dense(db, query))
    threads = []
    real_bm25 = retrieval.bm25
    monkeypatch.setattr(retrieval, "bm25", lambda *a: threads.append(threading.current_thread()) or real_bm25(*a))
    assert retrieval.search(db, query, k=1)[0].snippet.text.startswith("My grandmother")
    assert threads and threads[0] is not threading.main_thread()

    def broken(*_):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(retrieval, "bm25", broken)
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):  # not lost in the thread
        retrieval.search(db, query)


@pytest.mark.real
def test_warm_up_loads_the_embedder_in_a_thread_only_when_memory_holds_something(db, tmp_path):
    from assistant import embeddings

    embeddings._shared.cache_clear()
    assert retrieval.warm_up(db) is None and embeddings._shared.cache_info().currsize == 0
    (tmp_path / "a.txt").write_text("I am allergic to peanuts.")
    ingest.import_paths(db, [tmp_path / "a.txt"])
    embeddings._shared.cache_clear()
    thread = retrieval.warm_up(db)
    thread.join(timeout=60)
    assert embeddings._shared.cache_info().currsize == 1


def new_process_index(db):
    """The index a new process would build: forget this process's copy."""
    vectors._indexes.clear()
    vectors._read_ahead.clear()
    vectors._taken.clear()
    return vectors.index_for(db)


def memory_with_a_snapshot(db, tmp_path, monkeypatch):
    """Five notes, with a vector snapshot beside them; returns a search's first result."""
    monkeypatch.setattr(vectors, "SNAPSHOT_MIN", 3)
    notes = ["The lighthouse keeper lives on a rocky island.", "My grandmother bakes bread on Sundays."]
    notes += [f"Meeting notes, week {i}: the budget is unchanged." for i in range(3)]
    (tmp_path / "a.txt").write_text("\n\n".join(notes))
    ingest.import_paths(db, [tmp_path / "a.txt"])
    return retrieval.dense(db, "baking bread")


def test_the_warm_up_reads_the_snapshot_beside_the_model_load_and_the_first_search_takes_it(db, tmp_path, monkeypatch):
    first = memory_with_a_snapshot(db, tmp_path, monkeypatch)
    snapshot = str(vectors.snapshot_path(db))

    index = new_process_index(db)
    retrieval.warm_up(db).join(timeout=120)
    assert vectors._read_ahead[snapshot][4].tolist() == sorted(s.id for s in snippets(db))  # read, not yet used
    opened = []
    monkeypatch.setattr(vectors, "_read_snapshot", lambda path: opened.append(path))
    monkeypatch.setattr(index, "_load", lambda *a, **k: opened.append(a))
    assert retrieval.dense(db, "baking bread") == first  # from the copy read ahead: no file, no SQLite
    assert opened == [] and snapshot not in vectors._read_ahead and index.saved_rows == 5
    monkeypatch.undo()

    # A copy read ahead of a deletion is never used: the deletion drops it with the file.
    monkeypatch.setattr(vectors, "SNAPSHOT_MIN", 3)
    new_process_index(db)
    retrieval.warm_up(db).join(timeout=120)
    assert snapshot in vectors._read_ahead
    doomed = snippets(db)[0].id
    store.delete(db, [doomed])
    assert snapshot not in vectors._read_ahead
    assert doomed not in [i for i, _ in retrieval.dense(db, "lighthouse", n=10)]


def test_a_new_process_starts_from_the_vector_snapshot_and_reads_only_what_came_after(db, tmp_path, monkeypatch):
    first = memory_with_a_snapshot(db, tmp_path, monkeypatch)
    snapshot = vectors.snapshot_path(db)
    assert snapshot.is_file() and snapshot.parent == db_home(db)

    index = new_process_index(db)
    reads = []
    monkeypatch.setattr(index, "_load", lambda *a, **k: reads.append(a) or vectors.VectorIndex._load(index, *a, **k))
    assert retrieval.dense(db, "baking bread") == first
    assert index.saved_rows == 5 and reads == []  # the matrix came from the file, not from SQLite

    (tmp_path / "b.txt").write_text("I play the cello in an amateur orchestra.")
    ingest.import_paths(db, [tmp_path / "b.txt"])
    index = new_process_index(db)
    monkeypatch.setattr(index, "_load", lambda *a, **k: reads.append(a) or vectors.VectorIndex._load(index, *a, **k))
    looked_after = []
    real_missing = vectors.missing
    monkeypatch.setattr(vectors, "missing", lambda db, after=0: looked_after.append(after) or real_missing(db, after))
    top = retrieval.dense(db, "playing music in an orchestra")[0][0]
    assert store.get(db, top).text.startswith("I play the cello")
    assert len(reads) == 1 and reads[0][1].startswith("WHERE s.id >")  # only the appended row was read
    assert looked_after == [max(index.ids[:-1])]  # and only snippets after the snapshot were checked for vectors
    # Six rows are a fifth more than the snapshot's five: the search saved a new snapshot and
    # now maps it (read-only) instead of holding the row read from SQLite.
    assert len(index._base) == 6 and not index._base.flags.writeable and len(index.matrix) == 6

    (tmp_path / "c.txt").write_text("My sister keeps bees behind her house.")
    ingest.import_paths(db, [tmp_path / "c.txt"])
    index = new_process_index(db)
    assert store.get(db, retrieval.dense(db, "honey bees")[0][0]).text.startswith("My sister keeps bees")
    assert len(index._base) == 6 and len(index.matrix) == 7 and len(index._spare) > 1  # one row after them, room left
    # The two parts answer as one matrix: a full load from SQLite gives the same rows and the
    # same cosines, asked in an order that mixes them.
    full = vectors.VectorIndex()
    full._load(db, "")
    np.testing.assert_array_equal(index.matrix, full.matrix)
    query = retrieval.vector_for(index, "music", None)
    mixed = [int(i) for i in index.ids[::-1]]
    assert index.cosines(query, mixed) == pytest.approx(full.cosines(query, mixed))
    # A save writes both parts and maps them from the new file; the next process maps all seven.
    index._save(db)
    assert len(index._base) == 7 and index.matrix.tolist() == full.matrix.tolist()
    again = new_process_index(db)
    assert retrieval.dense(db, "playing music in an orchestra")[0][0] == top
    assert len(again._base) == 7 and again.matrix.tolist() == full.matrix.tolist()


def db_home(db):
    return Path(beside.database_name(db)).parent


def test_the_snapshot_goes_with_a_deletion_and_is_never_another_databases(db, tmp_path, monkeypatch):
    from assistant.store import open_database

    monkeypatch.setattr(vectors, "SNAPSHOT_MIN", 3)
    notes = [f"Secret number {i}: zanzibarquokka{i}." for i in range(4)]
    (tmp_path / "a.txt").write_text("\n\n".join(notes))
    ingest.import_paths(db, [tmp_path / "a.txt"])
    retrieval.dense(db, "secret")
    snapshot = vectors.snapshot_path(db)
    kept = snapshot.read_bytes()
    assert oct(snapshot.stat().st_mode & 0o777) == "0o600"

    doomed = snippets(db)[0].id
    store.delete(db, [doomed])
    assert not snapshot.exists()  # the deleted snippet's vector went with it
    assert doomed not in [i for i, _ in retrieval.dense(db, "secret")]
    assert snapshot.is_file()  # rebuilt without it
    new_process_index(db)
    assert doomed not in [i for i, _ in retrieval.dense(db, "secret", n=10)]

    # Another database with the same counters, and a truncated file, are both ignored.
    other_home = tmp_path / "other"
    monkeypatch.setenv("MYNA_HOME", str(other_home))
    other = open_database()
    (tmp_path / "c.txt").write_text("\n\n".join(f"Garden note {i}: tomatoes." for i in range(4)))
    ingest.import_paths(other, [tmp_path / "c.txt"])
    own = retrieval.dense(other, "secret")  # from its own vectors (and it saves its snapshot)
    vectors.snapshot_path(other).write_bytes(kept)  # the first database's, same counters (4, 0)
    new_process_index(other)
    assert retrieval.dense(other, "secret") == own
    vectors.snapshot_path(other).write_bytes(vectors.snapshot_path(other).read_bytes()[:100])
    new_process_index(other)
    assert retrieval.dense(other, "secret") == own
    other.conn.close()


# -- deleting ----------------------------------------------------------------------------------


def raw_bytes(home):
    return b"".join(p.read_bytes() for p in home.iterdir() if p.name.startswith("myna.db"))


def test_deletion_leaves_no_trace_in_the_files(db, myna_home, tmp_path):
    path = tmp_path / "secret.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"text": "My bank PIN hint is zanzibarquokka and I must forget it."}),
                json.dumps({"text": "An ordinary note about gardening."}),
            ]
        )
    )
    ingest.import_paths(db, [path])
    secret = next(s for s in snippets(db) if "zanzibarquokka" in s.text)
    assert retrieval.bm25(db, "zanzibarquokka")
    assert b"zanzibarquokka" in raw_bytes(myna_home)

    store.delete(db, [secret.id])
    assert retrieval.bm25(db, "zanzibarquokka") == []
    assert all("zanzibar" not in s.text for s in snippets(db))
    assert db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 1
    assert secret.id not in [i for i, _ in retrieval.dense(db, "bank PIN hint")]
    db.conn.close()
    assert b"zanzibarquokka" not in raw_bytes(myna_home), "not in the database, its index or its log"


def test_forget_everything_keeps_conversations(db, fake_engine, tmp_path):
    from assistant import replies
    from assistant.settings import Settings
    from assistant.store import conversations as convs

    fake_engine.queue("Noted.")
    replies.answer(db, fake_engine, Settings(), "Remember that I like jazz.")
    (tmp_path / "n.txt").write_text("A note.")
    ingest.import_paths(db, [tmp_path / "n.txt"])
    assert store.count(db) == 2  # the note and what the user said (an unrated reply is not a memory)
    store.forget_everything(db)
    assert store.count(db) == 0 and store.sources(db) == []
    assert db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 0
    assert len(convs.messages(db, convs.latest_conversation_id(db))) == 2


def test_a_chat_memory_is_named_by_the_chat_s_title(db, fake_engine):
    from assistant import replies
    from assistant.settings import Settings
    from assistant.store import conversations as convs

    fake_engine.queue("Sure.")
    reply = replies.answer(db, fake_engine, Settings(), "My sister is called Ines.")
    [said] = store.listing(db)
    assert said.origin == 'chat "My sister is called Ines."'
    convs.rename_conversation(db, reply.conversation_id, "Family")
    assert store.get(db, said.id).origin == 'chat "Family"'
    db.execute("UPDATE conversations SET title = '' WHERE id = ?", (reply.conversation_id,))  # untitled
    assert store.get(db, said.id).origin == f"conversation {reply.conversation_id}"


def test_deleting_a_conversation_deletes_its_memories(db, fake_engine):
    from assistant import replies
    from assistant.settings import Settings
    from assistant.store import conversations as convs

    fake_engine.queue("Sure.")
    reply = replies.answer(db, fake_engine, Settings(), "My sister is called Ines.")
    assert store.count(db) == 1
    convs.delete_conversation(db, reply.conversation_id)
    assert store.count(db) == 0
    assert retrieval.bm25(db, "Ines") == []


def test_find_keeps_what_matches_by_word_or_meaning(db, tmp_path):
    notes = tmp_path / "n.jsonl"
    notes.write_text("\n".join(json.dumps({"text": t}) for t in ["I play the cello.", "Say hello in five words."]))
    ingest.import_paths(db, [notes])
    assert retrieval.search(db, "tomato", k=5), "the prompt's ranking lists everything"
    assert retrieval.find(db, "tomato", min_relevance=0.45) == []
    assert [h.snippet.text for h in retrieval.find(db, "musical instrument", min_relevance=0.45)] == [
        "I play the cello."
    ]
    assert [h.snippet.text for h in retrieval.find(db, "five", min_relevance=0.99)] == ["Say hello in five words."]


# -- the keyword index of a large memory -----------------------------------------------------------


def keyword_notes() -> list[str]:
    topics = ["bread", "clocks", "sailing", "peanuts", "budget", "lighthouse", "violin", "garden"]
    notes = [f"Note {i}: {topics[i % 8]} and {topics[(i * 3) % 8]} {'again ' * (i % 4)}on day {i}." for i in range(60)]
    notes += ["The lighthouse keeper lives on a rocky island.", "My grandmother bakes bread on Sundays."]
    return notes + ["Zanzibar spices arrived for the grandmother's bread."]


def test_the_keyword_index_ranks_as_fts5_does(db, tmp_path, monkeypatch):
    from assistant.memory import keywords
    from assistant.store.words import terms_and_words

    monkeypatch.setattr(keywords, "MIN_SNIPPETS", 10)
    (tmp_path / "a.txt").write_text("\n\n".join(keyword_notes()))
    ingest.import_paths(db, [tmp_path / "a.txt"])
    path = keywords.path_for(db)
    assert path.is_file() and oct(path.stat().st_mode & 0o777) == "0o600"
    keywords._files.clear()  # as a new process: from the file
    index = keywords.index_for(db)
    assert len(index.ids) == store.count(db)
    for query in ["grandmother bread", "lighthouse clocks violin", "sailing again", "zanzibar", "nothing matches xyz"]:
        terms = terms_and_words(db, query)
        ours, theirs = dict(index.top(list(terms), 100)), dict(retrieval._fts5(db, terms, 100))  # every match
        assert ours.keys() == theirs.keys(), (query, set(ours) - set(theirs), set(theirs) - set(ours))
        assert np.allclose([ours[i] for i in theirs], list(theirs.values()), rtol=1e-5), query
        assert retrieval.bm25(db, query) == index.top(list(terms), retrieval.CANDIDATES)
    assert retrieval.search(db, "zanzibar spices", k=1)[0].snippet.text.startswith("Zanzibar")


def test_the_keyword_index_follows_new_edited_and_deleted_snippets(db, tmp_path, monkeypatch):
    from assistant.memory import keywords
    from assistant.store.conversations import add_message, create_conversation

    monkeypatch.setattr(keywords, "MIN_SNIPPETS", 10)
    (tmp_path / "a.txt").write_text("\n\n".join(keyword_notes()))
    ingest.import_paths(db, [tmp_path / "a.txt"])
    covered = keywords.index_for(db).covered_through

    def found(query):
        return [store.get(db, i).text for i, _ in retrieval.bm25(db, query)]

    def words_in_file():
        keywords._files.clear()
        return set(keywords.load(db).terms)

    # A chat message after the index was built is ranked by FTS5 beside it.
    conversation = create_conversation(db)
    message = add_message(db, conversation, "user", "I keep forgetting that the kayak is blue.")
    told.remember(db, message, "I keep forgetting that the kayak is blue.")
    assert found("kayak") == ["I keep forgetting that the kayak is blue."]
    assert keywords.index_for(db).covered_through == covered

    # An edited snippet loses its old words in the file at once; its new text is found.
    zanzibar = next(s for s in snippets(db) if s.text.startswith("Zanzibar"))
    store.edit(db, zanzibar.id, "Saffron arrived for the grandmother's cake.")
    assert "zanzibar" not in words_in_file()
    assert found("zanzibar") == [] and found("saffron") == ["Saffron arrived for the grandmother's cake."]
    assert zanzibar.id in keywords.index_for(db).others

    # A deleted one leaves no word behind, and is never returned.
    keeper = next(s for s in snippets(db) if s.text.startswith("The lighthouse keeper"))
    store.delete(db, [keeper.id])
    assert "rocki" not in words_in_file() and "keeper" not in words_in_file()
    assert keeper.id not in [i for i, _ in retrieval.bm25(db, "lighthouse keeper rocky")]

    # Another database's file, or a damaged one, is never used: FTS5 answers alone.
    from assistant.store.words import terms_and_words

    expected = retrieval._fts5(db, terms_and_words(db, "grandmother bread"), retrieval.CANDIDATES)
    kept = keywords.path_for(db).read_bytes()
    keywords.path_for(db).write_bytes(kept[:200])
    keywords._files.clear()
    assert keywords.index_for(db) is None and retrieval.bm25(db, "grandmother bread") == expected
    db.execute("UPDATE memory_state SET value = value + 1 WHERE key = 'instance'")
    keywords.path_for(db).write_bytes(kept)
    keywords._files.clear()
    assert keywords.index_for(db) is None and not keywords.path_for(db).exists()

    # Forgetting everything removes the file.
    keywords.update(db)
    assert keywords.path_for(db).exists()
    store.forget_everything(db)
    assert not keywords.path_for(db).exists()


# -- the approximate vector index of a large memory ------------------------------------------------


def test_the_approximate_index_keeps_exact_scores_and_follows_new_edited_and_deleted_snippets(
    db, tmp_path, monkeypatch
):
    from assistant.memory import ann
    from assistant.store.conversations import add_message, create_conversation

    monkeypatch.setattr(ann, "MIN_VECTORS", 100)
    planted = ["The lighthouse keeper lives on a rocky island.", "Zanzibar spices arrived for the grandmother's bread."]
    (tmp_path / "a.txt").write_text("\n\n".join(distractors(400, seed=3) + planted))
    ingest.import_paths(db, [tmp_path / "a.txt"])
    path = ann.path_for(db)
    assert path.is_file() and oct(path.stat().st_mode & 0o777) == "0o600"
    ann._files.clear()  # as a new process: read beside the model's load, checked by the first search
    retrieval.warm_up(db).join(timeout=120)
    read = ann._files.copies[str(path)]
    approx = ann.index_for(db)
    assert approx is read
    assert len(approx.ids) == approx.index.ntotal == store.count(db)

    matrix = retrieval.synced_index(db)
    from assistant.embeddings import embedder

    queries = distractors(30, seed=11)
    kept = []
    for vector in embedder().embed(queries):
        exact = matrix.search(vector, 5)
        found = matrix.search(vector, 5, approx)
        assert len(approx.candidates(vector, 5)) <= 5 * ann.RESCORE  # it scores a few, not all
        cosines = matrix.cosines(vector, [i for i, _ in found])
        assert all(abs(score - cosines[i]) < 1e-6 for i, score in found)  # scores are exact
        kept.append(len({i for i, _ in exact} & {i for i, _ in found}) / 5)
    assert np.mean(kept) >= 0.8, kept

    # A one-shot ask (retrieval.exact_only) neither reads the file nor searches through it:
    # the same hits as the exact scan; afterwards the index is used again.
    ann._files.clear()
    with retrieval.exact_only():
        retrieval.warm_up(db).join(timeout=120)
        assert str(path) not in ann._files.copies
        assert retrieval.approximate(db, matrix) is None
        assert retrieval.dense(db, queries[0], n=5) == matrix.search(embedder().embed([queries[0]])[0], 5)
    assert str(path) not in ann._files.copies
    assert retrieval.approximate(db, matrix) is not None

    def nearest(query):
        return [store.get(db, i).text for i, _ in retrieval.dense(db, query, n=1)]

    # A chat message after the index was built is scanned exactly beside it.
    conversation = create_conversation(db)
    message = add_message(db, conversation, "user", "I keep forgetting that the kayak is blue.")
    told.remember(db, message, "I keep forgetting that the kayak is blue.")
    assert nearest("what colour is my kayak") == ["I keep forgetting that the kayak is blue."]
    assert ann.index_for(db).covered_through == approx.covered_through

    # An edited snippet's old vector leaves the file at once; its new one is found.
    zanzibar = next(s for s in snippets(db) if s.text.startswith("Zanzibar"))
    store.edit(db, zanzibar.id, "Saffron arrived for the grandmother's cake.")
    ann._files.clear()
    reread = ann.load(db)
    assert zanzibar.id not in reread.ids and zanzibar.id in reread.others
    assert reread.index.ntotal == len(reread.ids) == store.count(db) - 2  # the edit and the chat message
    assert nearest("saffron for a cake") == ["Saffron arrived for the grandmother's cake."]

    # A deleted one is gone from the file and never returned.
    keeper = next(s for s in snippets(db) if s.text.startswith("The lighthouse keeper"))
    store.delete(db, [keeper.id])
    ann._files.clear()
    assert keeper.id not in ann.load(db).ids
    assert keeper.id not in [i for i, _ in retrieval.dense(db, "lighthouse keeper on a rocky island")]

    # Another database's file, or a damaged one, is never used.
    kept_bytes = path.read_bytes()
    path.write_bytes(kept_bytes[:300])
    ann._files.clear()
    assert ann.index_for(db) is None
    db.execute("UPDATE memory_state SET value = value + 1 WHERE key = 'instance'")
    path.write_bytes(kept_bytes)
    ann._files.clear()
    assert ann.index_for(db) is None and not path.exists()

    # The next import builds it again; forgetting everything removes it.
    (tmp_path / "b.txt").write_text("\n\n".join(distractors(20, seed=5)))
    ingest.import_paths(db, [tmp_path / "b.txt"])
    assert path.exists()
    store.forget_everything(db)
    assert not path.exists()
