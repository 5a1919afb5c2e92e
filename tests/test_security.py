"""The user's data folder is theirs alone, and no hub can reach outside its place.

Hub indexes are untrusted: every field that could become a path or a URL is checked before
anything is opened, downloaded or written (merger/hub/client.py), and `myna hub serve`
publishes only what its index names.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from assistant import paths
from assistant.errors import MynaError
from merger.hub import client as hub
from merger.hub.server import make_server, serve_in_background
from tests.conftest import MYNA, run_env


def loose_entries(folder: Path) -> list[str]:
    """Everything under `folder` that a user other than its owner could reach."""
    return [
        f"{entry} {stat.filemode(entry.lstat().st_mode)}"
        for entry in [folder, *folder.rglob("*")]
        if not entry.is_symlink() and entry.lstat().st_mode & 0o077
    ]


def run_loosely(home: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """A `myna` command started under the usual umask 022."""
    return subprocess.run(
        [MYNA, *args],
        env=run_env(home),
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.umask(0o022),
        timeout=600,
        **kwargs,
    )


@pytest.mark.real
def test_a_new_data_folder_and_everything_myna_writes_in_it_are_private(tmp_path):
    home = tmp_path / "home"
    notes = tmp_path / "notes.md"
    notes.write_text("# Garden\n\nThe basil moved to the kitchen window in May.\n")
    for args in (
        ("config", "set", "temperature", "0.3"),
        ("import", str(notes)),
        ("memory", "search", "basil"),
        ("ask", "--max-tokens", "3", "Where is the basil?"),
    ):
        done = run_loosely(home, *args)
        assert done.returncode == 0, done.stderr
        assert "private to you" not in done.stderr, "a folder Myna made itself never needs tightening"
    written = {p.name for p in home.iterdir()}
    assert {"myna.db", "cache"} <= written
    assert loose_entries(home) == []


def test_a_loose_data_folder_is_tightened_once_with_a_notice(tmp_path):
    home = tmp_path / "home"
    (home / "adapters" / "old").mkdir(parents=True)
    (home / "adapters" / "old" / "card.json").write_text("{}")
    (home / "myna.db").touch()
    for entry in (home, home / "adapters", home / "adapters" / "old"):
        entry.chmod(0o755)
    (home / "adapters" / "old" / "card.json").chmod(0o644)
    (home / "myna.db").chmod(0o644)

    first = run_loosely(home, "config", "path")
    assert first.returncode == 0, first.stderr
    assert f"Myna made its data folder {home} private to you" in first.stderr
    assert loose_entries(home) == []
    again = run_loosely(home, "config", "path")
    assert "private" not in again.stderr


def test_files_written_under_a_loose_umask_are_private_after_the_process_says_so(tmp_path):
    previous = os.umask(0o022)
    try:
        paths.make_process_private()
        (tmp_path / "export").mkdir()
        (tmp_path / "export" / "card.json").write_text("{}")
    finally:
        os.umask(previous)
    assert loose_entries(tmp_path / "export") == []


@pytest.mark.real
def test_an_export_is_private_and_a_read_only_target_gets_one_sentence(db, tmp_path, base_arch):
    from merger.formats.export import export_adapter
    from merger.formats.lora import random_lora
    from merger.formats.publish import publish

    adapter = publish(
        db, random_lora(base_arch, rank=2, modules=("attn_v",)), base_arch, stem="mine", kind="personal", card={}
    )
    previous = os.umask(0o022)
    try:
        export_adapter(adapter, tmp_path / "out")
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        if os.geteuid() != 0:  # root writes anywhere; the permission check below is for users
            with pytest.raises(MynaError, match="Cannot write the adapter to .*locked"):
                export_adapter(adapter, locked)
    finally:
        os.umask(previous)
    assert loose_entries(tmp_path / "out") == []
    assert (tmp_path / "out" / "adapter.gguf").stat().st_size > 0


def test_an_export_that_cannot_be_written_says_so_in_one_sentence(tmp_path, monkeypatch):
    """The read-only case for any user, root included: the write itself is refused."""
    from assistant.adapters import Adapter
    from merger.formats import export

    folder = tmp_path / "adapter"
    folder.mkdir()
    for name in export.FILES:
        (folder / name).write_text("x")
    adapter = Adapter(1, "mine", "personal", folder, "f" * 64, 2, 2.0, ["attn_v"], {}, "2026-01-01")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(export.shutil, "copyfile", refuse)
    with pytest.raises(MynaError, match=r"Cannot write the adapter to .* \(Permission denied\); choose another folder"):
        export.export_adapter(adapter, tmp_path / "out")


# --- hub indexes -------------------------------------------------------------------------

GOOD = {
    "name": "alpha",
    "description": "writes like alpha",
    "file": "adapters/alpha.gguf",
    "sha256": "a" * 64,
    "size": 10,
    "base_fingerprint": "b" * 64,
    "rank": 2,
    "alpha": 2.0,
    "targets": ["attn_v"],
    "license": "CC0",
}


def write_raw_index(folder: Path, *entries: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.json").write_text(json.dumps({"format": hub.FORMAT, "name": "h", "adapters": list(entries)}))


@pytest.mark.parametrize(
    "change",
    [
        {"sha256": "../../../../tmp/x"},
        {"sha256": "A" * 64},
        {"base_fingerprint": "../" * 21 + "x"},
        {"file": "/etc/passwd"},
        {"file": "../outside.gguf"},
        {"file": "adapters/../../outside.gguf"},
        {"file": "adapters//alpha.gguf"},
        {"file": "C:\\\\x.gguf"},
        {"file": "https://elsewhere.example/x.gguf"},
        {"name": "../../escape"},
        {"name": "/tmp/x"},
        {"name": "a/b"},
        {"name": ".hidden"},
        {"name": ""},
        {"targets": ["attn_v", "../x"]},
        {"size": -1},
        {"size": True},
        {"rank": "2"},
        {"profile_vector": ["1"]},
        {"unexpected": 1},
    ],
)
def test_no_hub_index_can_name_a_path_outside_the_hub(tmp_path, change):
    write_raw_index(tmp_path / "hub", {**GOOD, **change})
    with pytest.raises(MynaError, match="is not valid"):
        hub.open_hub(str(tmp_path / "hub"))


def test_a_valid_index_still_opens(tmp_path):
    write_raw_index(tmp_path / "hub", GOOD, {**GOOD, "name": "beta.2_x-y", "file": "beta.safetensors"})
    assert [e.name for e in hub.open_hub(str(tmp_path / "hub")).entries] == ["alpha", "beta.2_x-y"]


def test_two_entries_with_one_name_are_refused(tmp_path):
    write_raw_index(tmp_path / "hub", GOOD, GOOD)
    with pytest.raises(MynaError, match="same name"):
        hub.open_hub(str(tmp_path / "hub"))


@pytest.mark.real
def test_a_link_out_of_a_folder_hub_is_not_followed(db, tmp_path, base_arch, myna_home):
    from tests.test_hub import make_hub

    folder = tmp_path / "hub"
    make_hub(folder, base_arch, names=("alpha",))
    secret = tmp_path / "secret.gguf"
    (folder / "adapters" / "alpha.gguf").rename(secret)
    (folder / "adapters" / "alpha.gguf").symlink_to(secret)
    with pytest.raises(MynaError, match="points outside the hub folder"):
        hub.pull(db, hub.open_hub(str(folder)), "alpha", base_arch)
    downloads = myna_home / "downloads"
    assert not downloads.exists() or list(downloads.iterdir()) == []


@pytest.mark.real
def test_downloads_are_written_only_under_the_data_folder(db, tmp_path, base_arch, myna_home):
    from tests.test_hub import make_hub

    folder = tmp_path / "hub"
    make_hub(folder, base_arch, names=("alpha",))
    before = set(tmp_path.rglob("*"))
    hub.pull(db, hub.open_hub(str(folder)), "alpha", base_arch)
    created = {p for p in set(tmp_path.rglob("*")) - before}
    assert created and all(p.is_relative_to(myna_home) for p in created), sorted(map(str, created))


# --- hub serve ---------------------------------------------------------------------------


def fetch(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_hub_serve_publishes_only_what_its_index_names(tmp_path):
    folder = tmp_path / "hub"
    (folder / "adapters").mkdir(parents=True)
    (folder / "adapters" / "alpha.gguf").write_bytes(b"GGUF....")
    (folder / "adapters" / "unlisted.gguf").write_bytes(b"GGUF....")
    (folder / "authors-data.jsonl").write_text('{"text": "private training text"}\n')
    (tmp_path / "outside.txt").write_text("outside")
    write_raw_index(folder, {**GOOD, "size": 8})
    server = make_server(folder)
    serve_in_background(server)
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        assert fetch(f"{base}/index.json") == 200
        assert fetch(f"{base}/adapters/alpha.gguf") == 200
        for hidden in (
            "/",
            "/adapters/",
            "/adapters/unlisted.gguf",
            "/authors-data.jsonl",
            "/../outside.txt",
            "/%2e%2e/outside.txt",
        ):
            assert fetch(base + hidden) == 404, hidden
    finally:
        server.shutdown()
        server.server_close()


def test_hub_serve_on_a_port_in_use_says_so(tmp_path):
    write_raw_index(tmp_path / "hub", GOOD)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MynaError, match=f"Port {port} on 127.0.0.1 is in use"):
            make_server(tmp_path / "hub", port)
        done = subprocess.run(
            [MYNA, "hub", "serve", str(tmp_path / "hub"), "--port", str(port)],
            env=run_env(tmp_path / "home"),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1 and "is in use" in done.stderr and "Traceback" not in done.stderr
