"""Speed of the chat path: model load, first token, decode with and without an adapter,
a cold `myna ask`, a warm one (answered by a running `myna serve`), the chat window's first
frame, each beside a baseline, and the chat beside a running `myna personalize`
(bench/contention.py; minutes: `--no-contention` skips it).

    python -m bench speed [--runs 5] [--no-contention]
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import contention as contention_bench
from bench.common import BIN, RESULTS, median, run_measured, save, table

ASK_PROMPT = "Say hello in one short sentence."
ASK_TOKENS = 32
DECODE_TOKENS = 128
STORY = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Write a long story about a lighthouse keeper and a storm."},
]

# The one line more than a bare script needs: without it, llama.cpp's AMX kernels crash on
# this model on CPUs that have them (assistant/engine.py, new_llama).
BARE_LLAMA = """
import sys, llama_cpp
path, prompt, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
if " amx_int8" in open("/proc/cpuinfo").read():
    default_params = llama_cpp.llama_cpp.llama_model_default_params
    llama_cpp.llama_cpp.llama_model_default_params = lambda: setattr(p := default_params(), "use_extra_bufts", False) or p
llm = llama_cpp.Llama(path, n_ctx=4096, n_threads=2, verbose=False)
text = "<|im_start|>user\\n" + prompt + "<|im_end|>\\n<|im_start|>assistant\\n"
out = []
for token in llm.generate(llm.tokenize(text.encode(), add_bos=False, special=True), temp=0.0):
    if token == llm.token_eos() or len(out) >= n:
        break
    out.append(token)
print(llm.detokenize(out).decode(errors="replace"))
"""

MINIMAL_TEXTUAL = """
from textual.app import App
from textual.widgets import Footer, Static
class Minimal(App):
    def compose(self):
        yield Static("Conversations")
        yield Footer()
Minimal().run()
"""


def engine_figures(runs: int) -> dict:
    from assistant.catalogue import resolve
    from assistant.engine import AdapterUse, Engine, SamplingParams
    from assistant.settings import Settings
    from merger.formats import gguf_lora
    from merger.formats.base_model import architecture
    from merger.formats.lora import DEFAULT_TARGETS, random_lora
    from merger.search.merge import on_top_of

    spec = resolve(Settings().model)
    loads = []
    for _ in range(runs):
        start = time.perf_counter()
        engine = Engine(spec, context_size=4096, threads=2)
        loads.append(time.perf_counter() - start)

    arch = architecture(spec)
    folder = Path(tempfile.mkdtemp())
    adapters = {
        "default": gguf_lora.write(
            random_lora(arch, rank=8, seed=7, modules=DEFAULT_TARGETS), folder / "qv.gguf", arch
        ),
        "all7": gguf_lora.write(random_lora(arch, rank=8, seed=7), folder / "all7.gguf", arch),
    }
    # A merge on top of a hub's task adapter, served two ways: folded into one rank-16 adapter
    # (what `myna personalize` publishes) or as two rank-8 adapters active at once.
    task = random_lora(arch, rank=8, seed=8, modules=DEFAULT_TARGETS)
    merge = random_lora(arch, rank=8, seed=9, modules=DEFAULT_TARGETS)
    task_path = gguf_lora.write(task, folder / "task.gguf", arch)
    stacks = {
        "folded": [AdapterUse(gguf_lora.write(on_top_of(task, merge), folder / "folded.gguf", arch))],
        "two": [AdapterUse(task_path), AdapterUse(gguf_lora.write(merge, folder / "merge.gguf", arch))],
    }

    prompt = engine.tokenize_chat(STORY)
    first_tokens = []
    for _ in range(runs):
        marks = []
        engine.llm.reset()  # no cached prompt: the first token pays for the whole prompt
        start = time.perf_counter()
        engine.generate(prompt, SamplingParams(max_tokens=4, seed=1), lambda piece: marks.append(time.perf_counter()))
        first_tokens.append(marks[0] - start)

    def decode_rate() -> float:
        engine.llm.reset()
        stamps = []
        for _token in engine.llm.generate(prompt, temp=0.0):
            stamps.append(time.perf_counter())
            if len(stamps) >= DECODE_TOKENS:
                break
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])

    # Decode speed on 2 shared cores drifts by several percent from run to run: many short
    # runs, interleaved, so drift hits every variant alike, and medians.
    rates: dict[str, list[float]] = {"bare": [], "default": [], "all7": [], "folded": [], "two": []}
    for _ in range(runs * 3):
        for name in rates:
            engine.set_adapters(stacks.get(name) or ([] if name == "bare" else [AdapterUse(adapters[name])]))
            rates[name].append(decode_rate())
    engine.set_adapters([])
    return {
        "model_load_s": median(loads),
        "first_token_s": median(first_tokens),
        "prompt_tokens": len(prompt),
        "decode_tok_s_bare": median(rates["bare"]),
        "decode_tok_s_adapter": median(rates["default"]),
        "decode_tok_s_adapter_all7": median(rates["all7"]),
        "decode_tok_s_task_folded": median(rates["folded"]),
        "decode_tok_s_task_two": median(rates["two"]),
        "adapter": f"rank 8 on {', '.join(DEFAULT_TARGETS)} of 30 layers (the default personal adapter)",
        "model_path": str(spec.path),
    }


def cold_ask(runs: int, env: dict, model_path: str) -> dict:
    # The target is for an answer without retrieval; with memory, the query embedding model
    # loads too, measured beside it.
    ask = [str(BIN / "myna"), "ask", "--no-memory", "--temperature", "0", "--max-tokens", str(ASK_TOKENS), ASK_PROMPT]
    with_memory = [a for a in ask if a != "--no-memory"]
    bare = [sys.executable, "-c", BARE_LLAMA, model_path, ASK_PROMPT, str(ASK_TOKENS)]
    run_measured(ask, env)  # warm-up: first use caches the model's checksum, as setup does
    # A memory of 100,000 snippets: a copy of `python -m bench memory`'s largest store, if kept.
    large = RESULTS / "cache" / "memory-100000"
    large_env = None
    if (large / "myna.db").is_file():
        copy = Path(tempfile.mkdtemp(prefix="myna-bench-100k-"))
        for part in large.glob("myna.*"):
            shutil.copy2(part, copy / part.name)
        large_env = dict(env, MYNA_HOME=str(copy))
        run_measured(with_memory, large_env)  # its first process writes the vector snapshot, once
        # Like for like: the small memory is given the notes the large one gives this question,
        # so both prompts hold the same notes and the two asks differ in what recall searched.
        _import_notes(_notes_given(copy), env)
    mine, base, remembering, remembering_large = [], [], [], []
    for _ in range(runs):
        mine.append(run_measured(ask, env))
        base.append(run_measured(bare, env))
        remembering.append(run_measured(with_memory, env))
        if large_env:
            remembering_large.append(run_measured(with_memory, large_env))
    large_figures = (
        {
            "ask_with_memory_100k_wall_s": median([r["wall_s"] for r in remembering_large]),
            "ask_with_memory_100k_peak_mib": max(r["peak_mib"] for r in remembering_large),
        }
        if remembering_large
        else {}
    )
    given = {"ask_with_memory_notes": _notes_given(Path(env["MYNA_HOME"]))}
    if large_env:
        given["ask_with_memory_100k_notes"] = _notes_given(Path(large_env["MYNA_HOME"]))
    return {
        **large_figures,
        **{key: {"notes": len(notes), "characters": sum(map(len, notes))} for key, notes in given.items()},
        "ask_with_memory_wall_s": median([r["wall_s"] for r in remembering]),
        "ask_with_memory_peak_mib": max(r["peak_mib"] for r in remembering),
        "ask_wall_s": median([r["wall_s"] for r in mine]),
        "ask_peak_mib": max(r["peak_mib"] for r in mine),
        "bare_llama_wall_s": median([r["wall_s"] for r in base]),
        "bare_llama_peak_mib": max(r["peak_mib"] for r in base),
        "ask_reply": mine[-1]["stdout"].strip(),
    }


def warm_ask(runs: int, env: dict, model_path: str) -> dict:
    """`myna ask` handed to a running `myna serve` of the same data folder, beside the same ask
    answered alone (`--alone`) and the bare script, alternating, with memory on: first token
    (the first byte of the answer on standard output) and the whole process."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ask = [str(BIN / "myna"), "ask", "--quiet", "--temperature", "0", "--max-tokens", str(ASK_TOKENS), ASK_PROMPT]
    alone = [*ask[:2], "--alone", *ask[2:]]
    bare = [sys.executable, "-c", BARE_LLAMA, model_path, ASK_PROMPT, str(ASK_TOKENS)]
    log = Path(env["MYNA_HOME"]) / "bench-serve.log"
    with open(log, "w") as sink:
        server = subprocess.Popen([str(BIN / "myna"), "serve", "--port", str(port)], env=env, stdout=sink, stderr=sink)
    try:
        deadline = time.monotonic() + 300
        while "serves" not in log.read_text():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"myna serve did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        run_measured(ask, env)  # warm-up
        warm, cold, base, warm_first, cold_first = [], [], [], [], []
        for _ in range(runs):
            warm.append(run_measured(ask, env))
            cold.append(run_measured(alone, env))
            base.append(run_measured(bare, env))
            warm_first.append(_first_output_s(ask, env))
            cold_first.append(_first_output_s(alone, env))
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    return {
        "warm_ask_wall_s": median([r["wall_s"] for r in warm]),
        "warm_ask_peak_mib": max(r["peak_mib"] for r in warm),
        "warm_ask_first_token_s": median(warm_first),
        "alone_ask_wall_s": median([r["wall_s"] for r in cold]),
        "alone_ask_first_token_s": median(cold_first),
        "warm_bare_llama_wall_s": median([r["wall_s"] for r in base]),
        "warm_ask_reply": warm[-1]["stdout"].strip(),
    }


def _first_output_s(cmd: list[str], env: dict) -> float:
    """Seconds from starting `cmd` to the first byte it writes on standard output."""
    started = time.perf_counter()
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        process.stdout.read(1)
        return time.perf_counter() - started
    finally:
        process.stdout.read()
        process.wait(timeout=120)


def _notes_given(home: Path) -> list[str]:
    """The texts of the notes the latest reply in a data folder was given."""
    from assistant.memory import store as memory_store
    from assistant.store import open_database

    db = open_database(home / "myna.db")
    try:
        last = db.execute("SELECT id FROM messages WHERE role = 'assistant' ORDER BY id DESC LIMIT 1").fetchone()
        return [snippet.text for snippet in memory_store.used_by(db, last[0])] if last else []
    finally:
        db.close()


def _import_notes(notes: list[str], env: dict) -> None:
    """Each note imported into the data folder of `env` as a document of its own."""
    if not notes:
        return
    folder = Path(tempfile.mkdtemp(prefix="myna-bench-notes-"))
    for number, note in enumerate(notes):
        (folder / f"note-{number}.txt").write_text(note)
    run_measured([str(BIN / "myna"), "import", str(folder)], env)


def first_frame_s(cmd: list[str], marker: bytes, env: dict, timeout: float = 30.0) -> float:
    """Seconds from starting `cmd` in a real pseudo-terminal until `marker` is drawn."""
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdin=slave, stdout=slave, stderr=slave, env={**env, "TERM": "xterm-256color"}, start_new_session=True
    )
    os.close(slave)
    seen, elapsed = b"", None
    try:
        while elapsed is None:
            ready, _, _ = select.select([master], [], [], timeout)
            if not ready:
                raise RuntimeError(f"{cmd[0]} drew nothing with {marker!r} in {timeout} s")
            seen += os.read(master, 1 << 16)
            if marker in seen:
                elapsed = time.perf_counter() - start
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        os.close(master)
    return elapsed


def chat_window(runs: int, env: dict) -> dict:
    """The first frame for a returning user (the home of the cold asks: the app reopens the
    last conversation, whose reply is Markdown) and for a new one (an empty home: the
    welcome), beside a minimal Textual app, interleaved."""
    app = [str(BIN / "myna"), "chat"]
    minimal = [sys.executable, "-c", MINIMAL_TEXTUAL]
    new_user = {**env, "MYNA_HOME": tempfile.mkdtemp(prefix="myna-bench-new-")}
    first_frame_s(app, b"Conversations", env)  # warm-ups (the new home gets its database)
    first_frame_s(app, b"Conversations", new_user)
    mine, new, base = [], [], []
    for _ in range(runs):
        mine.append(first_frame_s(app, b"Conversations", env))
        new.append(first_frame_s(app, b"Conversations", new_user))
        base.append(first_frame_s(minimal, b"Conversations", env))
    return {
        "chat_first_frame_s": median(mine),
        "chat_first_frame_new_user_s": median(new),
        "minimal_textual_first_frame_s": median(base),
    }


def run(runs: int = 5, contention: bool = True) -> dict:
    home = tempfile.mkdtemp(prefix="myna-bench-")
    os.environ["MYNA_HOME"] = home  # never the user's own data
    env = dict(os.environ)
    figures = engine_figures(runs)
    figures.update(cold_ask(runs, env, figures["model_path"]))
    figures.update(warm_ask(runs, env, figures["model_path"]))
    figures.update(chat_window(runs, env))
    if contention:
        figures.update(contention_bench.run(runs, STORY))
    figures["adapter_cost"] = 1 - figures["decode_tok_s_adapter"] / figures["decode_tok_s_bare"]
    figures["adapter_cost_all7"] = 1 - figures["decode_tok_s_adapter_all7"] / figures["decode_tok_s_bare"]
    figures["ask_vs_bare_llama"] = figures["ask_wall_s"] / figures["bare_llama_wall_s"]
    figures["chat_vs_minimal_textual"] = figures["chat_first_frame_s"] / figures["minimal_textual_first_frame_s"]
    figures["runs"] = runs
    return figures


def report(f: dict) -> str:
    return table(
        [
            ("model load", f"{f['model_load_s']:.2f} s", ""),
            ("time to first token", f"{f['first_token_s']:.3f} s", f"prompt of {f['prompt_tokens']} tokens"),
            ("decode, no adapter", f"{f['decode_tok_s_bare']:.1f} tok/s", ""),
            (
                "decode, rank-8 adapter on q, v (default)",
                f"{f['decode_tok_s_adapter']:.1f} tok/s",
                f"cost {f['adapter_cost']:+.1%} of bare (target ≤ 10 %)",
            ),
            (
                "decode, rank-8 adapter on all 7 projections",
                f"{f['decode_tok_s_adapter_all7']:.1f} tok/s",
                f"cost {f['adapter_cost_all7']:+.1%} of bare",
            ),
            (
                "decode, a merge on top of a task adapter, folded into one rank-16 adapter",
                f"{f['decode_tok_s_task_folded']:.1f} tok/s",
                f"as two rank-8 adapters at once {f['decode_tok_s_task_two']:.1f} tok/s, "
                f"ratio {f['decode_tok_s_task_folded'] / f['decode_tok_s_task_two']:.2f}",
            ),
            (
                "cold `myna ask`, wall",
                f"{f['ask_wall_s']:.2f} s",
                f"bare llama-cpp-python script {f['bare_llama_wall_s']:.2f} s, ratio {f['ask_vs_bare_llama']:.2f} (target < 2 s)",
            ),
            (
                "cold `myna ask`, peak memory",
                f"{f['ask_peak_mib']:.0f} MiB",
                f"bare script {f['bare_llama_peak_mib']:.0f} MiB",
            ),
            (
                "cold `myna ask` with memory retrieval (a few snippets)",
                f"{f['ask_with_memory_wall_s']:.2f} s, {f['ask_with_memory_peak_mib']:.0f} MiB",
                "the query embedding model loads too (target ≤ 1.0 s)" + _notes(f, "ask_with_memory_notes"),
            ),
            *(
                [
                    (
                        "cold `myna ask` with a memory of 100,000 snippets",
                        f"{f['ask_with_memory_100k_wall_s']:.2f} s, {f['ask_with_memory_100k_peak_mib']:.0f} MiB",
                        "the vector index loads too, from its snapshot (target ≤ 1.0 s)"
                        + _notes(f, "ask_with_memory_100k_notes"),
                    )
                ]
                if "ask_with_memory_100k_wall_s" in f
                else []
            ),
            *(
                [
                    (
                        "warm `myna ask` (a running `myna serve` answers), memory on",
                        f"{f['warm_ask_wall_s']:.2f} s whole, first token {f['warm_ask_first_token_s']:.2f} s, "
                        f"{f['warm_ask_peak_mib']:.0f} MiB",
                        f"the same ask alone (`--alone`) {f['alone_ask_wall_s']:.2f} s, first token "
                        f"{f['alone_ask_first_token_s']:.2f} s; bare script {f['warm_bare_llama_wall_s']:.2f} s; "
                        f"ratio warm/alone {f['warm_ask_wall_s'] / f['alone_ask_wall_s']:.2f} (target ≤ 0.25 s whole)",
                    )
                ]
                if "warm_ask_wall_s" in f
                else []
            ),
            (
                "chat window, first frame (reopening the last conversation)",
                f"{f['chat_first_frame_s']:.2f} s",
                f"minimal Textual app {f['minimal_textual_first_frame_s']:.2f} s, ratio {f['chat_vs_minimal_textual']:.2f} (target < 0.5 s)",
            ),
            (
                "chat window, first frame (a new user: the welcome)",
                f"{f['chat_first_frame_new_user_s']:.2f} s",
                f"ratio {f['chat_first_frame_new_user_s'] / f['minimal_textual_first_frame_s']:.2f} to the minimal app",
            ),
            *(contention_bench.rows(f) if "contention_yield" in f else []),
        ]
    )


def _notes(f: dict, key: str) -> str:
    """What the ask's prompt held from memory, so two rows can be seen to compare like with like."""
    if key not in f:
        return ""
    notes = f[key]["notes"]
    return f"; its prompt held {notes} note{'' if notes == 1 else 's'}, {f[key]['characters']} characters"


def main(runs: int, contention: bool = True) -> None:
    figures = run(runs, contention)
    print(report(figures))
    print(f"\nreply of the cold ask: {figures['ask_reply']!r}")
    print(f"saved to {save('speed', figures)}")
