"""`myna hub serve`: a hub folder over HTTP, on 127.0.0.1 only, with resumable downloads."""

from __future__ import annotations

import errno
import functools
import os
import re
import threading
import urllib.parse
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from assistant.errors import MynaError

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class RangeHandler(SimpleHTTPRequestHandler):
    """Serves what the hub's index publishes (the index and the files it names, nothing else,
    no folder listings), honouring single byte ranges (the standard handler ignores Range)."""

    def log_message(self, format, *args):  # quiet: the CLI says what matters
        pass

    def list_directory(self, path):
        self.send_error(HTTPStatus.NOT_FOUND)
        return None

    def published(self, wanted: str) -> bool:
        from merger.hub import client

        folder = Path(self.directory).resolve()
        if wanted == client.INDEX:
            return True
        try:
            files = {entry.file for entry in client.open_hub(str(folder)).entries}
        except MynaError:
            return False  # an index that does not validate publishes nothing
        return wanted in files and (folder / wanted).resolve().is_relative_to(folder)

    def send_head(self):
        wanted = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        if not self.published(wanted):
            self.send_error(HTTPStatus.NOT_FOUND)
            return None
        match = _RANGE.match(self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if not match or not path.is_file():
            return super().send_head()
        size = path.stat().st_size
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else size - 1
        if start >= size:
            self.send_error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            return None
        handle = open(path, "rb")
        handle.seek(start)
        self.send_response(HTTPStatus.PARTIAL_CONTENT)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        return _Limited(handle, end - start + 1)


class _Limited:
    """A file object that stops after `left` bytes (for a range with an end)."""

    def __init__(self, handle, left: int) -> None:
        self.handle, self.left = handle, left

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        data = self.handle.read(self.left if n < 0 else min(n, self.left))
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.handle.close()


def make_server(
    folder: Path, port: int = 0, handler: type[SimpleHTTPRequestHandler] = RangeHandler
) -> ThreadingHTTPServer:
    """A server for `folder` on 127.0.0.1 (port 0: any free port; `server.server_port` says which)."""
    if not (Path(folder) / "index.json").is_file():
        raise MynaError(f"{folder} is not a hub (no index.json); build one with `myna hub build`.")
    bound = functools.partial(handler, directory=os.fspath(folder))
    try:
        return ThreadingHTTPServer(("127.0.0.1", port), bound)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise MynaError(
                f"Port {port} on 127.0.0.1 is in use by another program; choose another with --port "
                "(or stop the other server)."
            ) from None
        raise MynaError(
            f"Cannot serve on 127.0.0.1 port {port} ({exc.strerror}); choose another with --port."
        ) from None


def serve_in_background(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="myna-hub-server")
    thread.start()
    return thread
