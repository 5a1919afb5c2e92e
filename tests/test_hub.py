"""Community adapter hubs, pulled from a real HTTP server on 127.0.0.1."""

import json
import threading
from http.server import ThreadingHTTPServer

import pytest

from assistant import adapters
from assistant.errors import MynaError
from assistant.hashing import sha256_file
from merger.formats import gguf_lora
from merger.formats.lora import random_lora
from merger.hub import client as hub
from merger.hub.server import RangeHandler, make_server, serve_in_background

pytestmark = pytest.mark.real  # the real base model's shapes and fingerprint


def make_hub(folder, arch, names=("alpha", "beta")):
    (folder / "adapters").mkdir(parents=True)
    entries = []
    for seed, name in enumerate(names):
        path = gguf_lora.write(
            random_lora(arch, rank=2, seed=seed, modules=("attn_v",)), folder / "adapters" / f"{name}.gguf", arch
        )
        entries.append(
            hub.Entry(
                name=name,
                description=f"writes like {name}",
                file=f"adapters/{name}.gguf",
                sha256=sha256_file(path),
                size=path.stat().st_size,
                base_fingerprint=arch.fingerprint,
                rank=2,
                alpha=2.0,
                targets=["attn_v"],
                license="CC0",
                data_card={"author": name, "examples": 10},
                profile_vector=[1.0] + [0.0] * 383,
            )
        )
    hub.write_index(folder, "test hub", entries)
    return entries


@pytest.fixture
def served(tmp_path, base_arch):
    folder = tmp_path / "hub"
    make_hub(folder, base_arch)
    server = make_server(folder)
    serve_in_background(server)
    yield folder, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_pull_installs_a_verified_community_adapter(db, served, base_arch):
    folder, url = served
    source = hub.open_hub(url)
    assert [e.name for e in hub.search(source, "beta")] == ["beta"]
    seen = []
    installed = hub.pull(db, source, "alpha", base_arch, on_progress=lambda done, total: seen.append((done, total)))
    assert installed.kind == "community" and installed.name == "alpha"
    assert installed.card["hub"] == url and installed.card["license"] == "CC0"
    assert installed.card["profile_vector"][0] == 1.0
    assert adapters.active(db) is None, "pulling never activates"
    assert seen[-1][0] == seen[-1][1] == source.find("alpha").size
    assert sha256_file(folder / "adapters" / "alpha.gguf") == source.find("alpha").sha256
    with pytest.raises(MynaError, match="installed already"):
        hub.pull(db, source, "alpha", base_arch)


def test_a_folder_hub_works_too(db, served, base_arch):
    folder, _ = served
    assert hub.pull(db, hub.open_hub(str(folder)), "beta", base_arch).name == "beta"


def test_a_corrupted_download_is_thrown_away(db, served, base_arch, myna_home):
    folder, url = served
    target = folder / "adapters" / "alpha.gguf"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one bit flipped in transit, or on the server
    target.write_bytes(bytes(data))
    with pytest.raises(MynaError, match="failed its checksum.*nothing was installed"):
        hub.pull(db, hub.open_hub(url), "alpha", base_arch)
    assert adapters.listing(db) == []
    assert not any((myna_home / "downloads").iterdir())


def test_an_index_with_the_wrong_checksum_installs_nothing(db, served, base_arch):
    folder, url = served
    index = json.loads((folder / "index.json").read_text())
    index["adapters"][1]["sha256"] = "0" * 64
    (folder / "index.json").write_text(json.dumps(index))
    with pytest.raises(MynaError, match="failed its checksum"):
        hub.pull(db, hub.open_hub(url), "beta", base_arch)
    assert adapters.listing(db) == []


def test_another_base_model_is_refused_before_downloading(db, served, base_arch):
    folder, url = served
    index = json.loads((folder / "index.json").read_text())
    index["adapters"][0]["base_fingerprint"] = "b" * 64
    (folder / "index.json").write_text(json.dumps(index))
    (folder / "adapters" / "alpha.gguf").unlink()  # were it downloaded, this would fail differently
    with pytest.raises(MynaError, match="made for another base model.*nothing was downloaded"):
        hub.pull(db, hub.open_hub(url), "alpha", base_arch)


def test_a_file_whose_shapes_do_not_fit_is_refused_after_download(db, tmp_path, base_arch):
    from merger.formats.base_model import Architecture

    other = Architecture(**{**base_arch.__dict__, "hidden": 640})
    folder = tmp_path / "hub"
    (folder / "adapters").mkdir(parents=True)
    path = gguf_lora.write(random_lora(other, rank=2, modules=("attn_v",)), folder / "adapters" / "wide.gguf", other)
    hub.write_index(
        folder,
        "h",
        [
            hub.Entry(
                "wide",
                "",
                "adapters/wide.gguf",
                sha256_file(path),
                path.stat().st_size,
                base_arch.fingerprint,
                2,
                2.0,
                ["attn_v"],
                "CC0",
            )
        ],
    )
    with pytest.raises(MynaError, match="another base model"):
        hub.pull(db, hub.open_hub(str(folder)), "wide", base_arch)
    assert adapters.listing(db) == []


def test_a_pickle_is_refused(db, tmp_path, base_arch):
    folder = tmp_path / "hub"
    folder.mkdir()
    hub.write_index(
        folder, "h", [hub.Entry("evil", "", "evil.bin", "0" * 64, 10, base_arch.fingerprint, 2, 2.0, ["attn_v"], "?")]
    )
    with pytest.raises(MynaError, match="only GGUF or safetensors"):
        hub.pull(db, hub.open_hub(str(folder)), "evil", base_arch)


class FlakyHandler(RangeHandler):
    """Sends only the first half of a file on the first request, then drops the connection."""

    requests: list[str] = []

    def do_GET(self):
        if not self.path.endswith(".gguf"):
            return super().do_GET()
        type(self).requests.append(self.headers.get("Range", ""))
        if len(type(self).requests) == 1:
            _send_half(self, open(self.translate_path(self.path), "rb").read())
            return
        super().do_GET()


def test_a_dropped_connection_is_resumed_with_a_range_request(db, tmp_path, base_arch):
    folder = tmp_path / "hub"
    entries = make_hub(folder, base_arch, names=("alpha",))
    FlakyHandler.requests = []
    server = make_server(folder, handler=FlakyHandler)
    serve_in_background(server)
    try:
        installed = hub.pull(db, hub.open_hub(f"http://127.0.0.1:{server.server_port}"), "alpha", base_arch)
    finally:
        server.shutdown()
        server.server_close()
    assert installed.name == "alpha"
    half = entries[0].size // 2
    assert FlakyHandler.requests == ["", f"bytes={half}-"], "the second request asked for the rest only"


def test_a_server_that_dies_mid_download_can_be_resumed_later(db, tmp_path, base_arch, myna_home):
    folder = tmp_path / "hub"
    entries = make_hub(folder, base_arch, names=("alpha",))
    size = entries[0].size
    dying = ThreadingHTTPServer(("127.0.0.1", 0), _half_then_die(folder))
    port = dying.server_port
    serve_in_background(dying)
    source = hub.open_hub(str(folder))  # the index, read while the server lived
    remote = hub.Hub(f"http://127.0.0.1:{port}", "h", source.entries)
    with pytest.raises(MynaError, match=r"stopped at .* bytes .*run the same command again to resume"):
        hub.pull(db, remote, "alpha", base_arch)
    partial = next((myna_home / "downloads").glob("*.partial"))
    assert 0 < partial.stat().st_size < size
    assert adapters.listing(db) == []

    ranges = []

    class Watching(RangeHandler):
        def do_GET(self):
            ranges.append(self.headers.get("Range", ""))
            super().do_GET()

    revived = make_server(folder, port=port, handler=Watching)
    serve_in_background(revived)
    try:
        installed = hub.pull(db, remote, "alpha", base_arch)
    finally:
        revived.shutdown()
        revived.server_close()
    assert installed.name == "alpha"
    assert ranges == [f"bytes={size // 2}-"]


def _send_half(handler, data: bytes) -> None:
    """Promise the whole file, send half of it, and hang up."""
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data[: len(data) // 2])
    handler.wfile.flush()
    handler.close_connection = True


def _half_then_die(folder):
    import functools

    class Dies(RangeHandler):
        def do_GET(self):
            _send_half(self, (folder / "adapters" / "alpha.gguf").read_bytes())

            def die(server=self.server):  # as a killed process would: the port closes too
                server.shutdown()
                server.server_close()

            threading.Thread(target=die, daemon=True).start()

    return functools.partial(Dies, directory=str(folder))


def test_remove_and_the_cli(db, served, base_arch):
    from click.testing import CliRunner

    from tui.cli.main import cli

    _, url = served
    runner = CliRunner()
    result = runner.invoke(cli, ["adapters", "pull", "alpha", "beta", "--hub", url])
    assert result.exit_code == 0, result.output
    assert "Installed 'beta'" in result.stdout
    listing = runner.invoke(cli, ["adapters", "search", "--hub", url]).stdout
    assert "alpha (installed)" in listing
    assert runner.invoke(cli, ["adapters", "remove", "alpha"]).exit_code == 0
    assert [a.name for a in adapters.listing(db)] == ["beta"]
    missing = runner.invoke(cli, ["adapters", "search"])
    assert missing.exit_code == 1 and "Which hub?" in missing.stderr and "myna hub build" in missing.stderr


def test_the_server_listens_on_loopback_only(tmp_path, base_arch):
    folder = tmp_path / "hub"
    make_hub(folder, base_arch, names=("alpha",))
    server = make_server(folder)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()
    with pytest.raises(MynaError, match="not a hub"):
        make_server(tmp_path)
