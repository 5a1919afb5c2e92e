"""`myna serve`, the real server: started as a user would, on 127.0.0.1, and driven with the
official `openai` client and with raw HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.conftest import MYNA, run_env

pytestmark = pytest.mark.real


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, home: Path) -> None:
        self.home, self.port = home, free_port()
        self.env = run_env(home)
        self.log = home.parent / f"server-{self.port}.log"
        with open(self.log, "w") as sink:  # a file: a pipe nobody reads would fill and block it
            self.process = subprocess.Popen(
                [MYNA, "serve", "--port", str(self.port)], env=self.env, stdout=sink, stderr=subprocess.STDOUT
            )
        self.url = f"http://127.0.0.1:{self.port}/v1"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            if "serves" in self.log.read_text():
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    break
                except OSError:
                    pass
            time.sleep(0.3)
        else:
            raise AssertionError("the server did not start: " + self.log.read_text()[-3000:])
        self.token = subprocess.run(
            [MYNA, "serve", "--token"], env=self.env, capture_output=True, text=True, check=True
        ).stdout.strip()

    def client(self):
        from openai import OpenAI

        return OpenAI(base_url=self.url, api_key=self.token, max_retries=0, timeout=300)

    def streamed(self, content: str, max_tokens: int, memory: bool = True) -> list:
        """The chunks of one streamed reply to `content`, through the openai client."""
        extra = {} if memory else {"extra_body": {"myna": {"memory": False}}}
        return list(
            self.client().chat.completions.create(
                model="myna",
                messages=[{"role": "user", "content": content}],
                max_tokens=max_tokens,
                stream=True,
                **extra,
            )
        )

    def post(self, body: bytes, token: str | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"{self.url}/chat/completions",
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token or self.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("served") / "home"
    running = Server(home)
    yield running
    running.stop()


def stored(home: Path, sql: str, *args):
    conn = sqlite3.connect(home / "myna.db")
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def test_the_openai_client_gets_answers_with_memory_and_the_conversation_is_recorded(server):
    client = server.client()
    assert {m.id for m in client.models.list()} >= {"myna"}
    told = client.chat.completions.create(
        model="myna",
        messages=[{"role": "user", "content": "Hi! I just adopted a dog called Biscuit. What food do puppies need?"}],
        max_tokens=12,
        temperature=0,
    )
    assert told.choices[0].message.content and told.usage.completion_tokens > 0
    extra = told.model_extra["myna"]
    assert [r["summary"] for r in extra["remembered"]] == ["you just adopted a dog called Biscuit"]

    stream = client.chat.completions.create(
        model="myna", messages=[{"role": "user", "content": "What's my dog called?"}], max_tokens=12, stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    last = chunks[-1].model_extra["myna"]
    assert text and "Biscuit" in [s["text"] for s in last["sources"]][0], "the source comes back with the stream"
    messages = stored(
        server.home, "SELECT role, text FROM messages WHERE conversation_id = ? ORDER BY id", last["conversation_id"]
    )
    assert messages == [("user", "What's my dog called?"), ("assistant", text)], "recorded as it was streamed"

    without = client.chat.completions.create(
        model="myna",
        messages=[{"role": "user", "content": "What's my dog called?"}],
        max_tokens=8,
        extra_body={"myna": {"memory": False}},
    )
    assert without.model_extra["myna"]["sources"] == [], "memory off for this request"


def test_without_the_token_nothing_is_answered_and_it_listens_on_loopback_only(server):
    status, body = server.post(b'{"messages": [{"role": "user", "content": "hi"}]}', token="wrong")
    assert status == 401 and body["error"]["type"] == "authentication_error"
    listening = [c.laddr for c in psutil.Process(server.process.pid).net_connections() if c.status == "LISTEN"]
    listening += [
        c.laddr
        for child in psutil.Process(server.process.pid).children(recursive=True)
        for c in child.net_connections()
        if c.status == "LISTEN"
    ]
    assert listening and all(address.ip == "127.0.0.1" for address in listening)
    token_file = server.home / "server-token"
    assert token_file.stat().st_mode & 0o077 == 0, "the token is private"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"x" * (50 * 2**20), 413, "body_too_large"),
        (json.dumps({"messages": [{"role": "user", "content": "hi"}] * 10_000}).encode(), 400, None),
        (
            json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": -5}).encode(),
            400,
            "invalid_value",
        ),
        (
            json.dumps({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}).encode(),
            404,
            "model_not_found",
        ),
    ],
    ids=["invalid json", "50 MB", "10,000 messages", "negative max_tokens", "unknown model"],
)
def test_bad_requests_get_one_error_object_and_the_server_keeps_serving(server, body, status, code):
    got, answer = server.post(body)
    assert got == status and set(answer) == {"error"} and answer["error"]["message"].endswith((".", ")"))
    assert code is None or answer["error"]["code"] == code
    ok, _ = server.post(json.dumps({"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2}).encode())
    assert ok == 200


def test_twenty_clients_streaming_at_once_all_get_their_whole_reply(server):
    before = stored(server.home, "SELECT COUNT(*) FROM conversations")[0][0]
    done: dict[int, str] = {}

    def ask(number: int) -> None:
        chunks = server.streamed(f"Count to {number % 5 + 2}.", 6, memory=False)
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
        done[number] = "".join(c.choices[0].delta.content or "" for c in chunks)

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert len(done) == 20 and all(done.values())
    assert stored(server.home, "SELECT COUNT(*) FROM conversations")[0][0] == before + 20
    assert stored(server.home, "SELECT COUNT(*) FROM messages WHERE status != 'complete'") == [(0,)]


def test_a_killed_server_leaves_a_consistent_store_and_myna_ask_works_alone(tmp_path):
    home = tmp_path / "home"
    killed = Server(home)
    try:
        client = killed.client()
        stream = client.chat.completions.create(
            model="myna", messages=[{"role": "user", "content": "Tell me a long story."}], max_tokens=400, stream=True
        )
        next(c for c in stream if c.choices and c.choices[0].delta.content)  # the reply is being written
        os.kill(killed.process.pid, signal.SIGKILL)
        killed.process.wait(timeout=30)
    finally:
        killed.stop()
    conn = sqlite3.connect(home / "myna.db")
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    done = subprocess.run(
        [MYNA, "ask", "--max-tokens", "4", "Say hi."], env=run_env(home), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip(), done.stderr
    states = [row[0] for row in stored(home, "SELECT status FROM messages WHERE role = 'assistant' ORDER BY id")]
    assert len(states) == 2 and states[-1] == "complete"
    assert states[0] in ("interrupted", "complete"), "the killed reply is kept (marked if it was cut), never half-open"
    assert stored(
        home,
        "SELECT COUNT(*) FROM conversations c WHERE NOT EXISTS "
        "(SELECT 1 FROM messages m WHERE m.conversation_id = c.id)",
    ) == [(0,)]


def test_an_adapter_published_during_a_stream_is_used_from_the_next_reply(server, base_arch):
    """What the nightly run does when it wins: publish and activate, while a reply streams."""
    from assistant.store import open_database
    from merger.formats import publish
    from merger.formats.lora import random_lora

    client = server.client()
    stream = client.chat.completions.create(
        model="myna", messages=[{"role": "user", "content": "Tell me about rivers."}], max_tokens=48, stream=True
    )
    chunks = iter(stream)
    next(c for c in chunks if c.choices and c.choices[0].delta.content)
    db = open_database(server.home / "myna.db")
    try:
        adapter = publish.publish(
            db, random_lora(base_arch, rank=4, seed=9, std=0.3), base_arch, stem="nightly", kind="personal",
            card={"kind": "personal"}, activate=True, reason="personalization run (test)",
        )  # fmt: skip
    finally:
        db.conn.close()
    rest = list(chunks)
    assert rest[-1].choices[0].finish_reason in ("stop", "length"), "the reply under way completes"
    first = rest[-1].model_extra["myna"]["message_id"]
    after = client.chat.completions.create(
        model="myna",
        messages=[{"role": "user", "content": "Say hi."}],
        max_tokens=4,
        extra_body={"myna": {"memory": False}},
    )
    second = after.model_extra["myna"]["message_id"]
    used = dict(stored(server.home, "SELECT id, adapter FROM messages WHERE id IN (?, ?)", first, second))
    assert adapter.name not in (used[first] or ""), "not switched under a reply"
    assert adapter.name in (used[second] or ""), "the next reply uses what was published"


def test_myna_ask_hands_its_question_to_the_running_server(server):
    """Same output, same flags, and nothing loaded in the asking process."""
    from bench.common import run_measured

    before = stored(server.home, "SELECT COUNT(*) FROM conversations")[0][0]
    done = run_measured(
        [MYNA, "ask", "--sources", "--max-tokens", "8", "My sister Mia is allergic to peanuts. Any snack ideas?"],
        server.env,
    )
    assert done["stdout"].strip() and "Sources:" in done["stdout"]
    assert "Remembered: your sister Mia is allergic to peanuts" in done["stderr"]
    assert done["peak_mib"] < 200, "the server answered: no model or embedder was loaded here"
    assert stored(server.home, "SELECT COUNT(*) FROM conversations")[0][0] == before + 1
    again = run_measured([MYNA, "ask", "-c", "--max-tokens", "4", "--no-memory", "Thanks!"], server.env)
    conversation = stored(server.home, "SELECT MAX(id) FROM conversations")[0][0]
    assert again["stdout"].strip() and stored(
        server.home, "SELECT COUNT(*) FROM messages WHERE conversation_id = ?", conversation
    ) == [(4,)], "-c continues the conversation on the server too"
    alone = run_measured([MYNA, "ask", "--alone", "--max-tokens", "2", "--no-memory", "Hi."], server.env)
    assert alone["peak_mib"] > 200, "--alone loads the model here"
    refused = subprocess.run(
        [MYNA, "ask", "--conversation", "999", "x"], env=server.env, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 1 and "There is no conversation 999" in refused.stderr


def test_serve_detach_and_stop(tmp_path):
    env = run_env(tmp_path / "home")
    port = free_port()
    started = subprocess.run(
        [MYNA, "serve", "--detach", "--port", str(port)], env=env, capture_output=True, text=True, timeout=300
    )
    assert started.returncode == 0 and "in the background" in started.stdout, started.stderr
    place = json.loads((tmp_path / "home" / "server.json").read_text())
    assert psutil.pid_exists(place["pid"]) and place["port"] == port
    again = subprocess.run([MYNA, "serve", "--detach"], env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "already running" in again.stderr
    asked = subprocess.run(
        [MYNA, "ask", "--max-tokens", "4", "--no-memory", "Say hi."],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert asked.returncode == 0 and asked.stdout.strip(), asked.stderr
    stopped = subprocess.run([MYNA, "serve", "--stop"], env=env, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0 and "Stopped" in stopped.stdout
    assert not (tmp_path / "home" / "server.json").exists()
    assert not psutil.pid_exists(place["pid"]) or psutil.Process(place["pid"]).status() == psutil.STATUS_ZOMBIE
    nothing = subprocess.run([MYNA, "serve", "--stop"], env=env, capture_output=True, text=True, timeout=60)
    assert "No server is running" in nothing.stdout


def _crontab() -> list[str]:
    return subprocess.run(["crontab", "-l"], capture_output=True, text=True).stdout.splitlines()


def test_serve_at_login_installs_what_the_scheduler_runs_and_that_serves(tmp_path):
    """`myna serve --at-login` through cron (no systemd user session here): the @reboot line's
    command, run as cron runs it (sh, cron's bare environment), starts a server `myna ask`
    hands its question to; --not-at-login removes the line and nothing else."""
    home = tmp_path / "home"
    env, port, before = run_env(home), free_port(), _crontab()
    booted = None
    try:
        installed = subprocess.run(
            [MYNA, "serve", "--at-login", "--port", str(port)], env=env, capture_output=True, text=True, timeout=60
        )
        assert installed.returncode == 0 and "@reboot" in installed.stdout, installed.stderr
        marker = f"# myna-serve {home}"
        ours = [line for line in _crontab() if line.endswith(marker)]
        assert len(ours) == 1 and ours[0].startswith("@reboot ")
        command = ours[0][len("@reboot ") : -len(marker)].strip()
        cron_env = {"PATH": "/usr/bin:/bin", "HOME": os.environ["HOME"], "SHELL": "/bin/sh", "LOGNAME": "root"}
        booted = subprocess.Popen(["/bin/sh", "-c", command], env=cron_env, start_new_session=True)
        deadline = time.monotonic() + 300
        while not (home / "server.json").exists():
            assert booted.poll() is None, (home / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the server cron would start did not start"
            time.sleep(0.3)
        assert json.loads((home / "server.json").read_text())["port"] == port
        asked = subprocess.run(
            [MYNA, "ask", "--max-tokens", "4", "--no-memory", "Say hi."], env=env, capture_output=True, text=True
        )
        assert asked.returncode == 0 and asked.stdout.strip(), asked.stderr
        shown = subprocess.run([MYNA, "schedule", "status"], env=env, capture_output=True, text=True).stdout
        assert "At login, `myna serve`: crontab: @reboot" in shown
        again = subprocess.run([MYNA, "serve", "--at-login", "--port", str(port)], env=env, capture_output=True)
        assert again.returncode == 0 and len([line for line in _crontab() if line.endswith(marker)]) == 1
        stopped = subprocess.run([MYNA, "serve", "--stop"], env=env, capture_output=True, text=True, timeout=120)
        assert "Stopped" in stopped.stdout and booted.wait(timeout=60) == 0
        removed = subprocess.run([MYNA, "serve", "--not-at-login"], env=env, capture_output=True, text=True)
        assert removed.returncode == 0 and "crontab line" in removed.stdout
        assert not [line for line in _crontab() if line.endswith(marker)]
    finally:
        if booted is not None and booted.poll() is None:
            os.killpg(booted.pid, signal.SIGKILL)
        assert [line for line in _crontab() if str(home) not in line] == [
            line for line in before if str(home) not in line
        ], "other crontab lines are untouched"


async def test_the_app_open_on_the_served_folder_while_two_clients_stream(server, clean_engine, monkeypatch):
    """The chat app on the same data folder as a running server, replying while two clients
    stream: all three replies complete and the store stays consistent."""
    from tests.test_tui import SIZE, send, views, wait_until
    from tui.app import MynaApp

    monkeypatch.setenv("MYNA_HOME", str(server.home))
    done = {}

    def ask(number: int) -> None:
        chunks = server.streamed(f"Write {number + 2} words about tea.", 24)
        done[number] = "".join(c.choices[0].delta.content or "" for c in chunks)

    clients = [threading.Thread(target=ask, args=(n,)) for n in range(2)]
    app = MynaApp(engine_factory=lambda settings: clean_engine)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.engine is not None)
        for thread in clients:
            thread.start()
        await send(pilot, "Name a colour.")  # in the conversation the app reopens, the folder's last

        def answered() -> bool:
            shown = views(app)
            return not app.replying and len(shown) >= 2 and shown[-2].text == "Name a colour."

        await wait_until(pilot, answered)
        shown = views(app)[-1].text
    for thread in clients:
        thread.join(timeout=600)
    assert len(done) == 2 and all(done.values()) and shown.strip()
    assert stored(server.home, "PRAGMA integrity_check") == [("ok",)]
    assert stored(server.home, "SELECT COUNT(*) FROM messages WHERE status != 'complete'") == [(0,)]
    assert stored(server.home, "SELECT text FROM messages WHERE role = 'assistant' AND text = ?", shown)
