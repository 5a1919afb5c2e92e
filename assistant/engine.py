"""llama.cpp serving one base model, with LoRA adapters switched in place.

The model is loaded once per process. Prompts are tokenized here (so callers can count and
trim them exactly) and replies stream back as text pieces through a callback.
"""

from __future__ import annotations

import codecs
import collections
import ctypes
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence, TypeVar

import llama_cpp
import psutil  # here, not where it is used: a warm-up thread's imports slowed it to 0.14 s there

from assistant import chat_template
from assistant.catalogue import ModelSpec, verify
from assistant.errors import MynaError

if TYPE_CHECKING:
    import numpy as np

    from assistant.settings import Settings

Chat = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.9
    repeat_penalty: float = 1.1
    seed: int = -1
    copy_bias: float = 0.0  # added to the logits of `favoured` tokens (see Engine.generate)


@dataclass(frozen=True)
class AdapterUse:
    """One LoRA adapter to apply, at a scale (1.0 = as trained)."""

    path: Path
    scale: float = 1.0
    label: str = ""  # what replies record; the file name when empty


@dataclass
class Completion:
    text: str = ""
    tokens: int = 0
    finish: str = ""  # "stop": the model ended its turn; "length": out of tokens; "cancelled"


# llama.cpp logs through a C callback: about 2,200 lines while it loads a model, some at every
# decode. A Python callback needs the GIL for each line, so beside a thread that holds it the
# load waits at every line: 5 s instead of 0.13 s beside a busy thread (a cold `myna ask`
# imports ONNX Runtime in its warm-up thread while the model loads). So the lines go to a C
# function that ignores them, getpid (it takes no arguments; the three a C caller passes are
# harmless in the calling conventions llama.cpp runs on), and only when a load fails is it
# made again with them heard, for the error that explains it instead of printing it on the
# user's terminal.
_recent_log: collections.deque[str] = collections.deque(maxlen=20)
_GGML_LOG_ERROR = 4  # ggml's enum: none 0, debug 1, info 2, warn 3, error 4, cont 5


@llama_cpp.llama_log_callback
def _log_callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    if level == _GGML_LOG_ERROR:
        line = text.decode("utf-8", errors="replace").strip()
        # "llama_model_load: error loading model: ..." -> "error loading model: ..."
        line = re.sub(r"^(\w+: )+", "", line)
        if line:
            _recent_log.append(line)


T = TypeVar("T")
_ignore_log = ctypes.cast(ctypes.CDLL(None).getpid, llama_cpp.llama_log_callback)


def _quiet_logs() -> None:
    llama_cpp.llama_log_set(_ignore_log, ctypes.c_void_p(0))


def explained(load: Callable[[], T]) -> tuple[T | None, str]:
    """(what `load` made, "") or, when it raised or made nothing (None, a NULL pointer), (None,
    llama.cpp's error): a failed load is made again with llama.cpp's lines heard, for the line
    that says why."""

    def attempt() -> T | None:
        try:
            return load()
        except (ValueError, RuntimeError):
            return None

    made = attempt()
    if made:
        return made, ""
    _recent_log.clear()
    llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
    try:
        made = attempt()
    finally:
        _quiet_logs()
    return (made, "") if made else (None, first_log_error())


def first_log_error() -> str:
    """The first error llama.cpp logged since the log was cleared: the cause, not the echo."""
    return _recent_log[0] if _recent_log else ""


def default_threads() -> int:
    """The threads compute uses: OMP_NUM_THREADS when the environment sets it (Ray sets it to
    the CPUs a task declared; more threads than that would spin against the machine's other
    tasks), else one per physical core."""
    told = os.environ.get("OMP_NUM_THREADS", "")
    if told.isdigit() and int(told) > 0:
        return int(told)
    return max(1, psutil.cpu_count(logical=False) or os.cpu_count() or 1)


def cpu_has_amx() -> bool:
    try:
        with open("/proc/cpuinfo") as info:
            return any(line.startswith("flags") and " amx_int8" in line for line in info)
    except OSError:
        return False


def new_llama(**kwargs) -> llama_cpp.Llama:
    """llama_cpp.Llama, without llama.cpp's AMX kernels on CPUs that have them: those crash
    (SIGSEGV in the first decode) on Q4_0/Q4_1 weights, the default model's among them
    (ggml-org/llama.cpp#16315 and #20824; seen on an AMX machine of CI's kind, 1 Dec 2026).
    llama-cpp-python has no argument for llama.cpp's `use_extra_bufts`, so its default model
    parameters are adjusted while the model loads. Other CPUs keep every buffer type."""
    if not cpu_has_amx():
        return llama_cpp.Llama(**kwargs)
    library = llama_cpp.llama_cpp
    original = library.llama_model_default_params

    def without_extra_buffers():
        params = original()
        params.use_extra_bufts = False
        return params

    library.llama_model_default_params = without_extra_buffers
    try:
        return llama_cpp.Llama(**kwargs)
    finally:
        library.llama_model_default_params = original


class Engine:
    """The base model in llama.cpp. Not thread-safe: one reply at a time."""

    def __init__(self, spec: ModelSpec, *, context_size: int = 4096, threads: int = 0) -> None:
        verify(spec)
        _quiet_logs()
        threads = threads or default_threads()
        if spec.context_length:
            context_size = min(context_size, spec.context_length)
        llm, detail = explained(
            lambda: new_llama(
                model_path=str(spec.path),
                n_ctx=context_size,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        )
        if llm is None:
            raise MynaError(
                f"llama.cpp could not load {spec.path}"
                + (f" ({detail})" if detail else "")
                + "; it may be truncated or of an architecture this llama.cpp does not know; pass another with --model PATH."
            )
        self.llm = llm
        self.threads = threads
        self.spec = spec
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.template = chat_template.choose(spec.chat_template, self.llm.metadata.get("tokenizer.chat_template"))
        self._bos = self.llm.token_bos()
        self._bos_text = self._piece(self._bos) if self._bos >= 0 else ""
        eos = self.llm.token_eos()
        self._eos_text = self._piece(eos) if eos >= 0 else ""
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self._loaded_adapters: dict[Path, tuple[tuple[int, int, int], object]] = {}
        self.active_adapters: tuple[AdapterUse, ...] = ()
        self._active_handles: list[object] = []
        self._stale: list[object] = []
        self._fingerprint: str | None = None

    @classmethod
    def from_settings(cls, settings: "Settings", model: str | None = None) -> "Engine":
        """The engine for the user's settings; `model` (name or path) overrides the setting."""
        from assistant.catalogue import resolve

        return cls(resolve(model or settings.model), context_size=settings.context_size, threads=settings.threads)

    @property
    def model_name(self) -> str:
        return self.spec.name

    @property
    def fingerprint(self) -> str:
        """The base model's identity, which an adapter must have been made for."""
        if self._fingerprint is None:
            from assistant.catalogue import fingerprint

            self._fingerprint = fingerprint(self.spec)
        return self._fingerprint

    @property
    def adapter_name(self) -> str | None:
        """What is recorded with each reply: the file names of the adapters in use."""
        if not self.active_adapters:
            return None
        names = [
            (use.label or use.path.name) + ("" if use.scale == 1.0 else f"*{use.scale:g}")
            for use in self.active_adapters
        ]
        return "+".join(names)

    # -- prompts ---------------------------------------------------------------------------

    @property
    def context_size(self) -> int:
        return self.llm.n_ctx()

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    def render(self, chat: Chat, *, add_generation_prompt: bool = True) -> str:
        try:
            return chat_template.render(
                self.template,
                chat,
                bos_token=self._bos_text,
                eos_token=self._eos_text,
                add_generation_prompt=add_generation_prompt,
            )
        except Exception as exc:  # a model's template is foreign code; name it, don't crash
            raise MynaError(
                f"The chat template of {self.spec.name} failed ({exc}); use another model with --model PATH."
            ) from exc

    def tokenize_chat(self, chat: Chat, *, add_generation_prompt: bool = True) -> list[int]:
        text = self.render(chat, add_generation_prompt=add_generation_prompt)
        tokens = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if self._add_bos and (not tokens or tokens[0] != self._bos):
            tokens.insert(0, self._bos)
        return tokens

    # The names merger/data/encoding.py expects of any model that tokenizes examples.
    def chat_ids(self, chat: Chat) -> list[int]:
        return self.tokenize_chat(chat)

    def text_ids(self, text: str) -> list[int]:
        return self.tokenize(text)

    def text_of(self, ids: list[int]) -> str:
        return self.llm.detokenize(ids).decode("utf-8", errors="replace")

    @property
    def end_of_turn(self) -> int:
        return self.llm.token_eos()

    # -- generation ------------------------------------------------------------------------

    def generate(
        self,
        prompt: Sequence[int],
        params: SamplingParams,
        on_text: Callable[[str], None],
        should_stop: Callable[[], bool] = lambda: False,
        favoured: Sequence[int] = (),
    ) -> Completion:
        """Stream a reply to `prompt` (tokens); `on_text` gets each new piece of text.

        With `params.copy_bias`, the `favoured` tokens (those of the notes in the prompt) get
        that much added to their logits at every step: a small model then copies a name or a
        number from a note instead of paraphrasing it into something else (measured in
        bench/recall.py)."""
        room = self.context_size - len(prompt)
        if room <= 0:
            raise MynaError(
                f"The prompt is {len(prompt)} tokens but the context holds {self.context_size}; "
                "shorten it or raise context_size with `myna config set context_size N`."
            )
        budget = min(params.max_tokens, room)
        self.llm.set_seed(params.seed if params.seed >= 0 else random.randrange(2**31 - 1))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        done = Completion(finish="length")
        processors = None
        if params.copy_bias and favoured:
            import numpy as np

            boosted = np.unique(np.asarray(favoured, dtype=np.int64))

            def favour(_ids, scores):
                scores[boosted] += params.copy_bias
                return scores

            processors = llama_cpp.LogitsProcessorList([favour])
        for token in self.llm.generate(
            list(prompt),
            temp=params.temperature,
            top_p=params.top_p,
            repeat_penalty=params.repeat_penalty,
            logits_processor=processors,
        ):
            if llama_cpp.llama_vocab_is_eog(self.vocab, token):
                done.finish = "stop"
                break
            done.tokens += 1
            piece = decoder.decode(self.llm.detokenize([token]))
            ended = next((s for s in self.spec.stop if s in piece), None)
            if ended is not None:  # a stop text the model's vocabulary does not mark as end of turn
                piece = piece[: piece.index(ended)]
            if piece:
                done.text += piece
                on_text(piece)
            if ended is not None:
                done.finish = "stop"
                break
            if done.tokens >= budget:
                break
            if should_stop():
                done.finish = "cancelled"
                break
        tail = decoder.decode(b"", final=True)
        if tail:
            done.text += tail
            on_text(tail)
        return done

    # -- likelihood --------------------------------------------------------------------------

    def logprobs(self, prompt: Sequence[int], continuation: Sequence[int]) -> "np.ndarray":
        """Log-probability of each token of `continuation` following `prompt`, under the model
        with its current adapters. Logits are computed only where they are needed."""
        import numpy as np

        prompt, continuation = list(prompt), list(continuation)
        if not prompt or not continuation:
            raise ValueError("both the prompt and the continuation need at least one token")
        if len(prompt) + len(continuation) > self.context_size:
            raise MynaError(f"{len(prompt) + len(continuation)} tokens do not fit the context of {self.context_size}.")
        self.llm.reset()
        self.llm._ctx.kv_cache_clear()
        # Everything but the prompt's last token, without logits...
        position = self._decode(prompt[:-1], 0, logits=False)
        # ...then the positions whose next-token distribution is scored.
        scored = [prompt[-1]] + continuation[:-1]
        out = np.empty(len(continuation), dtype=np.float64)
        n_vocab = self.llm.n_vocab()
        for start in range(0, len(scored), self.llm.n_batch):
            chunk = scored[start : start + self.llm.n_batch]
            self._decode(chunk, position, logits=True)
            position += len(chunk)
            for offset in range(len(chunk)):
                logits = np.ctypeslib.as_array(self.llm._ctx.get_logits_ith(offset), shape=(n_vocab,)).astype(
                    np.float64
                )
                top = logits.max()
                log_norm = top + np.log(np.exp(logits - top).sum())
                out[start + offset] = logits[continuation[start + offset]] - log_norm
        self.llm.reset()  # the next generate() must not trust this state
        return out

    def last_logits(self, tokens: Sequence[int]) -> "np.ndarray":
        """The logits after `tokens` (for comparing models and adapters)."""
        import numpy as np

        tokens = list(tokens)
        self.llm.reset()
        self.llm._ctx.kv_cache_clear()
        self._decode(tokens, 0, logits=True)
        logits = np.ctypeslib.as_array(self.llm._ctx.get_logits_ith(-1), shape=(self.llm.n_vocab(),)).copy()
        self.llm.reset()
        return logits

    def _decode(self, tokens: list[int], position: int, *, logits: bool) -> int:
        for start in range(0, len(tokens), self.llm.n_batch):
            chunk = tokens[start : start + self.llm.n_batch]
            self.llm._batch.set_batch(chunk, position, logits_all=logits)
            self.llm._ctx.decode(self.llm._batch)
            position += len(chunk)
        return position

    # -- adapters --------------------------------------------------------------------------

    def forget_prompt(self) -> None:
        """The next generate() evaluates its whole prompt, reusing nothing evaluated before
        (llama.cpp's logits, hence greedy answers, differ slightly with how a prompt is split)."""
        self.llm.reset()

    def set_threads(self, threads: int) -> None:
        """The threads llama.cpp computes with, from the next evaluation on."""
        threads = max(1, threads)
        if threads != self.threads:
            llama_cpp.llama_set_n_threads(self.llm.ctx, threads, threads)
            self.threads = threads

    def set_adapters(self, adapters: Sequence[AdapterUse]) -> None:
        """Apply exactly these LoRA adapters (none: the bare model), without reloading."""
        adapters = tuple(adapters)
        handles = [self._load_adapter(use.path) for use in adapters]
        if adapters == self.active_adapters and handles == self._active_handles:
            return
        array = (llama_cpp.llama_adapter_lora_p_ctypes * max(1, len(handles)))(*handles)
        scales = (ctypes.c_float * max(1, len(handles)))(*[use.scale for use in adapters])
        if llama_cpp.llama_set_adapters_lora(self.llm.ctx, array, len(handles), scales) != 0:
            raise MynaError("llama.cpp refused to apply the adapters; check them with `myna adapters list`.")
        # Cached prompt state was computed with the old weights: never reuse it.
        self.llm.reset()
        self.active_adapters = adapters
        self._active_handles = handles
        while self._stale:
            llama_cpp.llama_adapter_lora_free(self._stale.pop())

    def _load_adapter(self, path: Path) -> object:
        path = Path(path).resolve()
        if not path.is_file():
            raise MynaError(f"The adapter file {path} does not exist; `myna adapters list` shows the installed ones.")
        stat = path.stat()
        identity = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        cached = self._loaded_adapters.get(path)
        if cached is not None and cached[0] != identity:
            # A new file at the same path (an adapter deleted and made again): the loaded
            # weights are stale. They are freed once the context no longer refers to them.
            self._stale.append(cached[1])
            del self._loaded_adapters[path]
        if path not in self._loaded_adapters:
            handle, detail = explained(
                lambda: llama_cpp.llama_adapter_lora_init(self.llm.model, str(path).encode("utf-8"))
            )
            if not handle:
                raise MynaError(
                    f"llama.cpp could not load the adapter {path}"
                    + (f" ({detail})" if detail else "")
                    + "; it is damaged or made for another base model."
                )
            self._loaded_adapters[path] = (identity, handle)
        return self._loaded_adapters[path][1]

    def forget_adapter(self, path: Path) -> None:
        """Free an adapter's memory once it will not be used again."""
        path = Path(path).resolve()
        if any(use.path.resolve() == path for use in self.active_adapters):
            self.set_adapters([u for u in self.active_adapters if u.path.resolve() != path])
        cached = self._loaded_adapters.pop(path, None)
        if cached:
            llama_cpp.llama_adapter_lora_free(cached[1])

    def _piece(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")
