"""Myna as a local server: an OpenAI-compatible API (`/v1/models`, `/v1/chat/completions`,
streamed or not) in front of the same reply service as the app and `myna ask`: memory and its
sources, the conversation recorded in the store, memories from the user's messages, the active
adapter picked up before each reply.

One worker thread owns the model, the embedder's use and the database connection (llama.cpp
and an SQLite connection are each for one thread), so replies are written one after another
while any number of clients wait and stream; the event loop only passes text along. Built on
FastAPI and uvicorn (`myna serve`, tui/cli/serve.py).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI
from fastapi import Request as HttpRequest
from fastapi.responses import JSONResponse, StreamingResponse

from assistant.errors import MynaError

MODEL_NAME = "myna"  # the user's assistant: the base model, its adapter and memory
MAX_BODY_BYTES = 4 * 2**20
DRAIN_LIMIT = 256 * 2**20  # an oversized body is read (and dropped) up to this, to answer it
MAX_MESSAGES = 1000
TOKEN_FILE = "server-token"
RUNNING_FILE = "server.json"  # where the running server listens, for `myna ask` to hand over


def token_path() -> Path:
    from assistant.paths import data_dir

    return data_dir() / TOKEN_FILE


def token(create: bool = True) -> str | None:
    """The bearer token clients must send, kept in the private data folder (made at first use)."""
    from assistant.atomic import atomic_write_text

    path = token_path()
    if path.is_file():
        return path.read_text().strip()
    if not create:
        return None
    value = secrets.token_urlsafe(32)
    atomic_write_text(path, value + "\n")
    return value


class BadRequest(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code


@dataclass
class Request:
    """What a chat completion asks of the reply service, checked."""

    text: str
    history: list[tuple[str, str]]  # earlier (role, text) turns the client sent
    system: str | None
    max_tokens: int | None
    temperature: float | None
    stream: bool
    use_memory: bool
    conversation_id: int | None
    continue_last: bool = False


def parse(body: Any, known_models: set[str]) -> Request:
    if not isinstance(body, dict):
        raise BadRequest(400, "The body must be a JSON object with `model` and `messages`.")
    model = body.get("model", MODEL_NAME)
    if model not in known_models:
        raise BadRequest(
            404,
            f"The model '{model}' does not exist; use one of {', '.join(sorted(known_models))}.",
            code="model_not_found",
        )
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest(400, "`messages` must be a non-empty list of {role, content} objects.")
    if len(messages) > MAX_MESSAGES:
        raise BadRequest(400, f"`messages` holds {len(messages)} entries; send at most {MAX_MESSAGES}.")
    turns = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise BadRequest(400, "Each message needs a `role` of system, user or assistant, and a `content`.")
        content = message.get("content")
        if isinstance(content, list):  # the parts form: its text parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        if not isinstance(content, str):
            raise BadRequest(400, "A message's `content` must be text.")
        turns.append((message["role"], content))
    if turns[-1][0] != "user":
        raise BadRequest(400, "The last message must be the user's: it is what Myna answers.")
    system = "\n\n".join(text for role, text in turns if role == "system") or None
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise BadRequest(400, "`max_tokens` must be a whole number of at least 1.", code="invalid_value")
    temperature = body.get("temperature")
    if temperature is not None and (not isinstance(temperature, int | float) or not 0 <= temperature <= 2):
        raise BadRequest(400, "`temperature` must be a number from 0 to 2.", code="invalid_value")
    extra = body.get("myna") if isinstance(body.get("myna"), dict) else {}
    conversation_id = extra.get("conversation_id")
    if conversation_id is not None and not isinstance(conversation_id, int):
        raise BadRequest(400, "`myna.conversation_id` must be a conversation's number.")
    return Request(
        text=turns[-1][1],
        history=[(role, text) for role, text in turns[:-1] if role != "system"],
        system=system,
        max_tokens=max_tokens,
        temperature=temperature,
        stream=bool(body.get("stream", False)),
        use_memory=bool(extra.get("memory", True)),
        conversation_id=conversation_id,
        continue_last=bool(extra.get("continue_last", False)),
    )


class Worker:
    """The one thread that holds the model and the store and writes replies, in turn."""

    def __init__(self, model: str | None = None) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="myna-replies")
        self.model = model
        self.state: dict[str, Any] = {}
        self.pool.submit(self._open).result()  # the model loads before the first request

    def _open(self) -> None:
        from assistant import settings as settings_mod
        from assistant.engine import Engine
        from assistant.memory import retrieval
        from assistant.store import open_database
        from assistant.store.conversations import recover_abandoned_replies

        db = open_database()
        recover_abandoned_replies(db)
        settings = settings_mod.load(db)
        self.state = {"db": db, "settings": settings, "engine": Engine.from_settings(settings, model=self.model)}
        if settings.memory == "on":
            retrieval.warm_up(db)

    @property
    def base_name(self) -> str:
        return self.state["engine"].spec.name

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def submit(self, request: Request, on_text: Callable[[str], None], stop: threading.Event | None = None):
        """Write the reply in the worker thread, in turn: a future of its facts for the response.
        `stop` set (the client went away): the reply ends there, kept as interrupted."""
        return self.pool.submit(self._reply, request, on_text, stop or threading.Event())

    def _reply(self, request: Request, on_text: Callable[[str], None], stop: threading.Event) -> dict:
        from assistant import replies
        from assistant import settings as settings_mod
        from assistant.store import conversations as convs

        db, engine = self.state["db"], self.state["engine"]
        settings = settings_mod.load(db)  # `myna config set` while serving takes effect
        conversation_id = request.conversation_id
        if request.continue_last:
            conversation_id = convs.latest_conversation_id(db)
            if conversation_id is None:
                raise BadRequest(400, "There is no conversation to continue yet; ask without --continue first.")
        if conversation_id is not None:
            try:
                convs.get_conversation(db, conversation_id)
            except MynaError as exc:
                raise BadRequest(404, str(exc)) from None
        settings = settings_mod.with_overrides(
            replies.settings_for(db, settings, conversation_id),
            system_prompt=request.system,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
        )
        if conversation_id is None and request.history:  # a client that keeps its own history
            conversation_id = convs.create_conversation(db)
            for role, text in request.history:
                convs.add_message(db, conversation_id, role, text)
        try:
            pending = replies.begin(
                db, engine, settings, request.text, conversation_id=conversation_id, use_memory=request.use_memory
            )
        except MynaError as exc:
            raise BadRequest(400, str(exc)) from None
        reply = replies.stream(db, engine, settings, pending, on_text=on_text, should_stop=stop.is_set)
        return {
            "text": reply.text,
            "finish": "length" if reply.finish == "length" else "stop",
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "myna": {
                "conversation_id": reply.conversation_id,
                "message_id": reply.message_id,
                "sources": [
                    {"id": s.id, "kind": s.kind, "origin": s.origin, "date": s.date, "text": s.text}
                    for s in reply.sources
                ],
                "remembered": [{"id": r.memory.id, "summary": r.summary} for r in pending.remembered],
                "notice": pending.notice,
                "status": reply.status,
                "dropped_turns": reply.dropped_turns,
            },
        }


def error_body(message: str, kind: str = "invalid_request_error", code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def make_app(worker: Worker, secret: str):

    app = FastAPI(title="Myna", docs_url=None, redoc_url=None, openapi_url=None)
    known = {MODEL_NAME, worker.base_name}

    def refuse(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None):
        return JSONResponse(error_body(message, kind, code), status_code=status)

    @app.middleware("http")
    async def guard(request: HttpRequest, call_next):
        if request.headers.get("authorization", "") != f"Bearer {secret}":
            return refuse(
                401,
                "Send `Authorization: Bearer TOKEN`; `myna serve --token` prints it.",
                "authentication_error",
                "invalid_api_key",
            )
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            if int(declared) <= DRAIN_LIMIT:  # read it to the end, so the client gets the answer, not a reset
                async for _ in request.stream():
                    pass
            return refuse(413, f"The body is over {MAX_BODY_BYTES // 2**20} MB; send less.", code="body_too_large")
        try:
            return await call_next(request)
        except Exception as exc:  # never a traceback to the client; the server keeps serving
            return refuse(500, f"Myna could not answer ({type(exc).__name__}: {exc}).", "server_error")

    @app.exception_handler(404)
    async def not_found(request, exc):
        return refuse(404, f"There is no {request.url.path} here; Myna serves /v1/models and /v1/chat/completions.")

    @app.get("/v1/models")
    async def models():
        created = int(time.time())
        return {
            "object": "list",
            "data": [{"id": name, "object": "model", "created": created, "owned_by": "myna"} for name in sorted(known)],
        }

    @app.post("/v1/chat/completions")
    async def chat(request: HttpRequest):
        raw, size = b"", 0
        async for chunk in request.stream():  # a body without a declared length: counted as it comes
            size += len(chunk)
            if size <= MAX_BODY_BYTES:
                raw += chunk
            elif size > DRAIN_LIMIT:
                break
        if size > MAX_BODY_BYTES:
            return refuse(413, f"The body is over {MAX_BODY_BYTES // 2**20} MB; send less.", code="body_too_large")
        try:
            asked = parse(json.loads(raw or b"null"), known)
        except (ValueError, UnicodeDecodeError):
            return refuse(400, "The body is not valid JSON.", code="invalid_json")
        except BadRequest as bad:
            return refuse(bad.status, bad.message, bad.kind, bad.code)
        ident, created = f"chatcmpl-{secrets.token_hex(12)}", int(time.time())
        model = MODEL_NAME

        if not asked.stream:
            try:
                done = await asyncio.wrap_future(worker.submit(asked, lambda piece: None))
            except BadRequest as bad:
                return refuse(bad.status, bad.message, bad.kind, bad.code)
            return {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": done["text"]},
                        "finish_reason": done["finish"],
                    }
                ],
                "usage": {
                    "prompt_tokens": done["prompt_tokens"],
                    "completion_tokens": done["completion_tokens"],
                    "total_tokens": done["prompt_tokens"] + done["completion_tokens"],
                },
                "myna": done["myna"],
            }

        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue = asyncio.Queue()
        gone = threading.Event()  # the client closed the stream (Ctrl-C in `myna ask`)
        job = worker.submit(asked, lambda piece: loop.call_soon_threadsafe(pieces.put_nowait, piece), gone)
        job.add_done_callback(lambda _: loop.call_soon_threadsafe(pieces.put_nowait, None))

        def chunk(delta: dict, finish: str | None = None, **extra) -> str:
            body = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            return f"data: {json.dumps(body)}\n\n"

        async def events():
            try:
                yield chunk({"role": "assistant", "content": ""})
                while (piece := await pieces.get()) is not None:
                    yield chunk({"content": piece})
            except BaseException:  # cancelled: the client is gone
                gone.set()
                raise
            try:
                done = job.result()
            except BadRequest as bad:
                yield f"data: {json.dumps(error_body(bad.message, bad.kind, bad.code))}\n\n"
            except Exception as exc:
                yield f"data: {json.dumps(error_body(f'Myna could not answer ({exc}).', 'server_error'))}\n\n"
            else:
                yield chunk({}, done["finish"], myna=done["myna"])
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def serve(host: str = "127.0.0.1", port: int = 8642, model: str | None = None, on_ready=print) -> None:
    """Serve until Ctrl-C (or SIGTERM): the replies under way finish or are kept as written."""
    import os

    import uvicorn

    from assistant.atomic import atomic_write_text
    from assistant.paths import data_dir

    secret = token()
    worker = Worker(model)
    running = data_dir() / RUNNING_FILE

    def terminated(signum, frame):  # uvicorn raises the signal again once it has shut down
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminated)  # so `myna serve --stop` and a kill tidy up as Ctrl-C does
    try:
        app = make_app(worker, secret)
        place = {"pid": os.getpid(), "host": host, "port": port, "model": worker.base_name}
        atomic_write_text(running, json.dumps(place) + "\n")
        on_ready(f"Myna serves {worker.base_name} (as '{MODEL_NAME}') on http://{host}:{port}/v1; Ctrl-C stops it.")
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        worker.close()
        try:
            if json.loads(running.read_text()).get("pid") == os.getpid():
                running.unlink()
        except (OSError, ValueError):
            pass
