"""`myna ask` through a running `myna serve` of the same data folder: nothing to load here.

Plain data in and out (the server's OpenAI-style stream, read with the standard library), so a
warm ask imports neither the model, the embedder nor the store."""

from __future__ import annotations

import http.client
import json
import os
from dataclasses import dataclass
from typing import Callable

from assistant.errors import MynaError


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    token: str
    pid: int


def running() -> Endpoint | None:
    """The server serving this data folder, if one is running (its pid alive, its token here)."""
    from assistant.paths import data_dir

    home = data_dir()
    try:
        place = json.loads((home / "server.json").read_text())
        token = (home / "server-token").read_text().strip()
        os.kill(int(place["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    host = place.get("host") or "127.0.0.1"
    return Endpoint("127.0.0.1" if host in ("0.0.0.0", "::") else host, int(place["port"]), token, int(place["pid"]))


def ask(place: Endpoint, body: dict, on_text: Callable[[str], None], should_stop: Callable[[], bool]) -> dict | None:
    """Stream the reply from the server: its facts (the last chunk's `myna` and finish), or
    None when the server cannot be reached (then the caller answers alone). A request the
    server refuses raises MynaError with its sentence."""
    connection = http.client.HTTPConnection(place.host, place.port, timeout=600)
    try:
        connection.request(
            "POST",
            "/v1/chat/completions",
            json.dumps({**body, "stream": True}),
            {"Authorization": f"Bearer {place.token}", "Content-Type": "application/json"},
        )
        response = connection.getresponse()
    except OSError:
        connection.close()
        return None
    try:
        if response.status != 200:
            raise MynaError(_message(response.read()))
        done: dict = {"stopped": False}
        for line in response:
            if should_stop():
                done["stopped"] = True  # closing the connection stops the reply there, kept as interrupted
                break
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:
                raise MynaError(event["error"]["message"])
            choice = event["choices"][0]
            if choice["delta"].get("content"):
                on_text(choice["delta"]["content"])
            if choice.get("finish_reason"):
                done.update(finish=choice["finish_reason"], **event.get("myna", {}))
        return done
    finally:
        connection.close()


def _message(raw: bytes) -> str:
    try:
        return json.loads(raw)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return "The running `myna serve` refused the question; stop it or ask with --alone."
