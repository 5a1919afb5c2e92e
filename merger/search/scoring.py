"""Scoring candidate merges on the user's held-out examples.

A backend applies a candidate's weights and answers two questions: how likely are the user's
own held-out outputs (mean log-probability per token, no decoding needed), and what does the
model say to a prompt (greedy). Three backends, compared in bench/personalize.py:

- `TorchBackend` (the default for the search): the merged matrices are copied into PEFT's LoRA
  layers and examples are scored in batches with bfloat16. Measured on 2 cores it scores
  ~1,100 tokens/s against ~330 for llama.cpp's prompt processing, and applying a candidate
  writes nothing.
- `LlamaFileBackend`: each candidate merged into one GGUF adapter and applied alone in
  llama.cpp: what is served later, so the final check before publishing uses it.
- `LlamaScalesBackend`: the community adapters applied together with their weights as
  llama.cpp scales (the weighted sum of updates; no file per candidate, slower per token).

Utility is the held-out log-likelihood, or (PriME's published fitness) the task's metrics of
generated answers. Privacy similarity is how closely a candidate's outputs match the sharer
adapters' own: ROUGE-L on a few probe prompts for the closest sharer, or (as published) the
task's metrics on all held-out inputs, averaged over the sharers, or that average counting
only what exceeds the model without any community adapter ("excess"); or, in likelihood rather
than words, how much more likely the candidate finds each sharer's own answers than the model
without any community adapter does ("likelihood"). A merge should not let any one person's
adapter speak through it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from assistant.engine import AdapterUse, SamplingParams
from assistant.tasks import TASKS
from merger.data import metrics
from merger.data.encoding import Encoded, encode_example
from merger.data.examples import Example
from merger.formats import gguf_lora
from merger.formats.base_model import HF_NAMES, Architecture
from merger.formats.lora import Lora
from merger.search.evolution import Trial, best_of
from merger.search.merge import merge_elementwise, merge_updates, on_top_of
from merger.search.options import ANSWER_TERMS, ANSWER_TOKENS, MERGES, PRIVACY_TERMS, PROBE_TOKENS


@dataclass
class ScoringSet:
    examples: list[Example]
    encoded: list[Encoded]
    probes: list[list[int]]  # prompt ids for the privacy probes
    probe_tokens: int = PROBE_TOKENS
    answer_tokens: int = ANSWER_TOKENS  # generated per example when answers are scored

    @property
    def tokens(self) -> int:
        return sum(len(e.ids) for e in self.encoded)


def prepare(
    encoder,
    examples: list[Example],
    system: str,
    *,
    max_length: int = 192,
    probes: int = 6,
    probe_tokens: int = PROBE_TOKENS,
    answer_tokens: int = ANSWER_TOKENS,
) -> ScoringSet:
    encoded = [encode_example(encoder, e, system, max_length) for e in examples]
    return ScoringSet(examples, encoded, [e.prompt for e in encoded[:probes]], probe_tokens, answer_tokens)


def combine(loras: list[Lora], weights, merge: str = "elementwise", rank: int | None = None) -> Lora:
    if merge == "elementwise":
        return merge_elementwise(loras, weights)
    if merge == "updates":
        return merge_updates(loras, weights, rank=rank)
    raise ValueError(f"unknown merge {merge!r}; choose from {', '.join(MERGES)}")


def merged_rank(loras: list[Lora], merge: str, rank: int | None, task: Lora | None = None) -> int:
    below = task.rank if task is not None else 0
    if merge == "elementwise":
        return loras[0].rank + below
    total = sum(lora.rank for lora in loras)
    return (min(rank, total) if rank else total) + below


def candidate(loras: list[Lora], weights, merge: str, rank: int | None, task: Lora | None = None) -> Lora | None:
    """The one adapter a weight vector stands for: the combination of `loras`, on top of the
    task adapter they were trained on top of when there is one; None for the bare base model."""
    merged = combine(loras, weights, merge, rank) if np.any(weights) else None
    return on_top_of(task, merged) if task is not None else merged


# -- llama.cpp ---------------------------------------------------------------------------------


class LlamaBackend:
    def __init__(self, engine) -> None:
        self.engine = engine
        self.encoder = engine  # what tokenizes answers into examples (encoding.Encoder)
        # Decoding as `myna ask` decodes a prompt with notes in it: their tokens (by prompt) get
        # `copy_bias` added to their logits (assistant.engine.SamplingParams). Off by default.
        self.copy_bias = 0.0
        self.favoured: dict[tuple[int, ...], tuple[int, ...]] = {}

    @property
    def decoding(self) -> str:
        """What, beside the adapters, decides its answers to a prompt (answer_cache.stack)."""
        return f"copy bias {self.copy_bias:g}" if self.copy_bias else ""

    def mean_logprob(self, scoring: ScoringSet) -> float:
        total, count = 0.0, 0
        for item in scoring.encoded:
            values = self.engine.logprobs(item.prompt, item.output)
            total += float(values.sum())
            count += len(values)
        return total / max(count, 1)

    def generate(self, prompts: list[list[int]], max_tokens: int) -> list[str]:
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0, copy_bias=self.copy_bias)
        return [
            self.engine.generate(p, params, lambda piece: None, favoured=self.favoured.get(tuple(p), ())).text.strip()
            for p in prompts
        ]


class LlamaFileBackend(LlamaBackend):
    name = "llama.cpp, one merged file per candidate"

    def __init__(
        self,
        engine,
        loras: list[Lora],
        arch: Architecture,
        folder: Path,
        *,
        merge: str = "elementwise",
        rank: int | None = None,
        task: Lora | None = None,
    ) -> None:
        super().__init__(engine)
        self.loras, self.arch, self.folder, self.merge, self.rank = loras, arch, Path(folder), merge, rank
        self.task = task
        self.folder.mkdir(parents=True, exist_ok=True)
        self._count = itertools.count()
        self._current: Path | None = None

    def apply(self, weights) -> None:
        adapter = candidate(self.loras, weights, self.merge, self.rank, self.task)
        if adapter is None:
            self.engine.set_adapters([])
        else:
            path = self.folder / f"candidate-{next(self._count)}.gguf"
            gguf_lora.write(adapter, path, self.arch)
            self.engine.set_adapters([AdapterUse(path)])
            self._discard()
            self._current = path

    def _discard(self) -> None:
        if self._current is not None:
            self.engine.forget_adapter(self._current)
            self._current.unlink(missing_ok=True)
            self._current = None

    def close(self) -> None:
        self.engine.set_adapters([])
        self._discard()


class LlamaScalesBackend(LlamaBackend):
    name = "llama.cpp, all adapters at once with scales"

    def __init__(self, engine, paths: list[Path], task: Path | None = None) -> None:
        super().__init__(engine)
        self.paths = [Path(p) for p in paths]
        self.below = [AdapterUse(Path(task))] if task else []  # the task adapter, always at scale 1

    def apply(self, weights) -> None:
        self.engine.set_adapters(self.below + [AdapterUse(p, float(w)) for p, w in zip(self.paths, weights) if w != 0])

    def close(self) -> None:
        self.engine.set_adapters([])


# -- torch -------------------------------------------------------------------------------------


class TorchBackend:
    name = "torch, merged matrices copied into PEFT, bfloat16 batches"

    def __init__(
        self,
        base,
        loras: list[Lora],
        *,
        merge: str = "elementwise",
        rank: int | None = None,
        batch_size: int = 8,
        task: Lora | None = None,
    ) -> None:
        import torch
        from peft import LoraConfig, get_peft_model

        from merger.training.train import bf16_native

        self.base, self.loras, self.merge, self.rank, self.batch_size = base, loras, merge, rank, batch_size
        self.encoder = base
        self.task = task
        self.modules = sorted({m for lora in [*loras, *([task] if task else [])] for m in lora.modules()})
        self.width = merged_rank(loras, merge, rank, task)
        self.bf16 = bf16_native()
        self.model = get_peft_model(
            base.model,
            LoraConfig(
                r=self.width,
                lora_alpha=self.width,
                lora_dropout=0.0,
                target_modules=sorted({HF_NAMES[m].split(".")[-1] for m in self.modules}),
            ),
        )
        self.model.eval()
        self._torch = torch
        self.apply(np.zeros(len(loras)))

    def _layer(self, key: str):
        _, layer, module = key.split(".")
        part, projection = HF_NAMES[module].split(".")
        return getattr(getattr(self.model.get_base_model().model.layers[int(layer)], part), projection)

    def apply(self, weights) -> None:
        torch = self._torch
        merged = candidate(self.loras, weights, self.merge, self.rank, self.task)
        with torch.no_grad():
            for layer_number in range(len(self.model.get_base_model().model.layers)):
                for module in self.modules:
                    key = f"blk.{layer_number}.{module}"
                    linear = self._layer(key)
                    a_weight, b_weight = linear.lora_A["default"].weight, linear.lora_B["default"].weight
                    if merged is None or key not in merged.weights:
                        b_weight.zero_()
                        continue
                    a, b = merged.weights[key]
                    a_weight.zero_()
                    b_weight.zero_()
                    a_weight[: a.shape[0]] = torch.from_numpy(a)  # a smaller merged rank fills the first rows
                    b_weight[:, : b.shape[1]] = torch.from_numpy(b)

    def mean_logprob(self, scoring: ScoringSet) -> float:
        """Training's own held-out measure (train.mean_nll), negated: higher is better."""
        from merger.training.train import mean_nll

        torch = self._torch
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            nll = mean_nll(self.model, scoring.encoded, self.base.end_of_turn, self.batch_size)
        return -nll if nll is not None else 0.0

    def example_nll(self, encoded: list[Encoded]) -> list[float]:
        """Mean negative log-likelihood per output token of each example (membership tests)."""
        from merger.training.train import example_losses

        torch = self._torch
        values: list[float] = []
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            for start in range(0, len(encoded), self.batch_size):
                values += example_losses(self.model, encoded[start : start + self.batch_size], self.base.end_of_turn)
        return values

    def generate(self, prompts: list[list[int]], max_tokens: int) -> list[str]:
        torch = self._torch
        pad = self.base.end_of_turn
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=pad,
            )
        return [self.base.tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in out]

    def close(self) -> None:
        """Give the base model back without LoRA layers; closing twice is harmless."""
        if not getattr(self, "_closed", False):
            self._closed = True
            self.model.unload()


# -- what a candidate is worth -------------------------------------------------------------------


def _metric(task: str | None) -> tuple[str, tuple[str, ...]]:
    """The metric kind and labels answers are compared with: the task's, else ROUGE."""
    return (TASKS[task].metric, TASKS[task].labels) if task else ("rouge", ())


def answers(backend, scoring: ScoringSet) -> list[str]:
    """What the backend's model answers to each of the user's held-out inputs."""
    return backend.generate([e.prompt for e in scoring.encoded], scoring.answer_tokens)


def task_score(predictions: list[str], scoring: ScoringSet, task: str | None = None) -> float:
    """The task's metric of these answers against the user's own outputs (higher is better)."""
    kind, labels = _metric(task)
    return metrics.fitness(kind, predictions, [e.output for e in scoring.examples], labels)


@dataclass(frozen=True)
class Sharers:
    """What each sharer's adapter alone answers (to the probes for the "closest" and
    "likelihood" terms, to the held-out inputs otherwise) and, for the "excess" term, what the
    model without any community adapter (the base, or the task adapter alone) answers to the
    same inputs; for "likelihood", each sharer's answers as examples (`own`) and the mean
    log-probability per token that model gives them (`before`)."""

    answers: list[list[str]]
    reference: list[str] | None = None
    own: list[ScoringSet] | None = None
    before: list[float] | None = None

    def __bool__(self) -> bool:
        return bool(self.answers)


def answered(encoder, prompts: list[list[int]], said: list[str], tokens: int) -> list[Encoded]:
    """Each prompt with an answer as its output, encoded as a training example's output is."""
    encoded = []
    for prompt, text in zip(prompts, said):
        output = encoder.text_ids(text)[:tokens] + [encoder.end_of_turn]
        encoded.append(Encoded(prompt + output, [-100] * len(prompt) + output))
    return encoded


def likelihood_lift(backend, sharers: Sharers) -> float:
    """The mean over the sharers of 1 - exp(-lift), where lift is how many nats per token more
    likely the candidate the backend holds finds that sharer adapter's own answers than the
    model without any community adapter does (floored at zero): 0 when no sharer's answers
    became likelier, towards 1 as the candidate speaks like one. It is what a loss-based
    membership attack compares, but on what the sharer's adapter says, not on its data."""
    lifts = [max(0.0, backend.mean_logprob(own) - before) for own, before in zip(sharers.own, sharers.before)]
    return float(np.mean([1.0 - np.exp(-lift) for lift in lifts]))


def _per_sharer(candidate: list[str], sharers: list[list[str]], task: str | None) -> np.ndarray:
    kind, labels = _metric(task)
    return np.array([metrics.fitness(kind, candidate, outputs[: len(candidate)], labels) for outputs in sharers])


def mean_similarity(candidate: list[str], sharers: list[list[str]], task: str | None = None) -> float:
    """PriME's privacy term: the mean over the sharers of the task metric between the
    candidate's answers and that sharer adapter's answers to the same inputs."""
    return float(np.mean(_per_sharer(candidate, sharers, task)))


def excess_similarity(
    candidate: list[str], sharers: list[list[str]], reference: list[str], task: str | None = None
) -> float:
    """The mean over the sharers of how much more the candidate's answers match that sharer's
    than the answers without any community adapter do, floored at zero: similarity the model
    had before any sharer's adapter reveals nothing about the sharer, and a candidate cannot
    earn a lower term than zero by answering worse."""
    before = _per_sharer(reference[: len(candidate)], sharers, task)
    return float(np.mean(np.maximum(0.0, _per_sharer(candidate, sharers, task) - before)))


def similarity(candidate: list[str], sharers: list[list[str]]) -> tuple[float, int]:
    """(the closest sharer's mean ROUGE-L with the candidate's probe outputs, that sharer)."""
    scores = [float(np.mean([metrics.rouge_l(c, s) for c, s in zip(candidate, outputs)])) for outputs in sharers]
    best = int(np.argmax(scores))
    return scores[best], best


@dataclass(frozen=True)
class Objective:
    """What a candidate merge is judged by: its utility (`metric`: "likelihood" of the held-out
    outputs, or "task": the task's metric of generated answers) and its privacy term (see
    options.PRIVACY_TERMS)."""

    metric: str = "likelihood"
    task: str | None = None
    privacy: str = "closest"


PUBLISHED = Objective(metric="task", privacy="mean")  # PriME's published code, for a given task


def judge(backend, scoring: ScoringSet, sharers: Sharers, objective: Objective = Objective()):
    """(utility, similarity to the sharers by the objective's privacy term) of whatever the
    backend holds now; no similarity (None) when there are no sharers' outputs to compare
    with. `sharers` are what `sharer_outputs` gave for the same term."""
    metric, privacy = objective.metric, objective.privacy
    if privacy not in PRIVACY_TERMS:
        raise ValueError(f"unknown privacy term {privacy!r}; choose from {', '.join(PRIVACY_TERMS)}")
    # One generation of the held-out answers serves the task metric and the answer-based terms.
    said = answers(backend, scoring) if metric == "task" or (privacy in ANSWER_TERMS and sharers) else None
    value = task_score(said, scoring, objective.task) if metric == "task" else backend.mean_logprob(scoring)
    return value, _similarity(backend, scoring, sharers, objective, said)


def _similarity(backend, scoring: ScoringSet, sharers: Sharers, objective: Objective, said: list[str] | None):
    """The privacy term for answers `said` to the first held-out inputs (the answer-based
    terms compare them with the sharers' answers to the same inputs)."""
    if not sharers:
        return None
    if objective.privacy == "mean":
        return mean_similarity(said, sharers.answers, objective.task)
    if objective.privacy == "excess":
        return excess_similarity(said, sharers.answers, sharers.reference, objective.task)
    if objective.privacy == "likelihood":
        return likelihood_lift(backend, sharers)
    return similarity(backend.generate(scoring.probes, scoring.probe_tokens), sharers.answers)[0]


def weight_term(weights, adapters: int) -> float:
    """The "weights" privacy term of a merge: the L1 norm of its weights, each adapter's
    averaged over its layers when there is one weight per adapter and layer (adapter by
    adapter, as merge.py reads them)."""
    by_adapter = np.abs(np.asarray(weights, dtype=float)).reshape(adapters, -1)
    return float(by_adapter.mean(axis=1).sum())


RACE_FIRST = 16  # held-out examples a raced candidate is judged on first; doubled at each step


def race_steps(count: int, first: int = RACE_FIRST) -> list[int]:
    """How many held-out examples a raced candidate has answered after each step: 16, 32,
    ... then all of them."""
    steps, size = [], first
    while size < count:
        steps.append(size)
        size *= 2
    return steps + [count]


def _first(scoring: ScoringSet, start: int, end: int) -> ScoringSet:
    return replace(scoring, examples=scoring.examples[start:end], encoded=scoring.encoded[start:end])


class Evaluator:
    """The search's evaluation of a weight vector: weights -> (utility, similarity, complete).

    Each distinct point is evaluated once and kept (`judged`): optimizers revisit points,
    and several searches (one per alpha, the baselines) share one evaluator, so `best(alpha)`
    picks from every point any of them evaluated.

    Racing, for task-metric fitness (answers are generated, the expensive part) when
    `race_alpha` is given and there are more held-out examples than the first step: a
    candidate answers 16 examples, then 32, ... then all, and after each step its fitness on
    the examples answered so far is compared with the best complete candidate's on the same
    examples. One behind stops there: its estimate guides the optimizer, but it is not
    complete and cannot win."""

    def __init__(
        self,
        backend,
        scoring: ScoringSet,
        sharers: Sharers,
        objective: Objective = Objective(),
        race_alpha: float | None = None,
        adapters: int | None = None,
    ) -> None:
        self.backend, self.scoring, self.sharers, self.objective = backend, scoring, sharers, objective
        self.adapters = adapters  # how many adapters the weights are of (None: one weight each)
        self.judged: dict[tuple, tuple[float, float | None, bool]] = {}
        racing = race_alpha is not None and objective.metric == "task"
        self.steps = race_steps(len(scoring.examples)) if racing else [len(scoring.examples)]
        self.alpha = race_alpha or 0.0
        self.bar: list[float] | None = None  # the best complete candidate's fitness after each step
        self.stopped = 0  # candidates stopped early

    def __call__(self, weights) -> tuple[float, float | None, bool]:
        weights = np.asarray(weights, dtype=float)
        key = tuple(float(w) for w in np.round(weights, 6))
        if key not in self.judged:
            self.backend.apply(weights)
            # The weights term is the weights' own: nothing the backend says changes it.
            own = weight_term(weights, self.adapters or weights.size) if self.objective.privacy == "weights" else None
            if len(self.steps) > 1:
                self.judged[key] = self._race(own)
            else:
                utility, sim = judge(self.backend, self.scoring, self.sharers, self.objective)
                self.judged[key] = (utility, sim if own is None else own, True)
        return self.judged[key]

    def _race(self, own: float | None = None) -> tuple[float, float | None, bool]:
        said: list[str] = []
        path: list[float] = []
        sim = own
        for number, end in enumerate(self.steps):
            said += answers(self.backend, _first(self.scoring, len(said), end))
            answered = _first(self.scoring, 0, end)
            utility = task_score(said, answered, self.objective.task)
            if own is None and (number == 0 or self.objective.privacy in ANSWER_TERMS):  # probe terms: once
                sim = _similarity(self.backend, answered, self.sharers, self.objective, said)
            path.append(utility - self.alpha * (sim or 0.0))
            if number < len(self.steps) - 1 and self.bar is not None and path[-1] < self.bar[number]:
                self.stopped += 1
                return utility, sim, False
        if self.bar is None or path[-1] > self.bar[-1]:
            self.bar = path
        return utility, sim, True

    def best(self, alpha: float) -> Trial:
        """The best complete point evaluated so far, by fitness at `alpha`."""
        return best_of([Trial(k, u, s, u - alpha * (s or 0.0), done) for k, (u, s, done) in self.judged.items()], alpha)


def sharer_outputs(
    backend, scoring: ScoringSet, count: int, privacy: str = "closest", made: list[list[str]] | None = None
) -> Sharers:
    """Each community adapter's own outputs (weight 1 on it, 0 on the rest): on every
    held-out input for the answer-based terms, on the probes otherwise; for "excess", also the
    answers with every weight 0; for "likelihood", how likely the model with every weight 0
    finds each sharer's answers. `made`: the sharers' outputs another backend already
    generated, so only what belongs to this backend (the reference answers, the likelihoods)
    is computed here; generating them is most of the cost. None for "weights", which
    compares no outputs."""
    if privacy == "weights":
        return Sharers([])
    if made is None:
        made = []
        for index in range(count):
            weights = np.zeros(count)
            weights[index] = 1.0
            backend.apply(weights)
            if privacy in ANSWER_TERMS:
                made.append(answers(backend, scoring))
            else:
                made.append(backend.generate(scoring.probes, scoring.probe_tokens))
    outputs = made
    if privacy == "excess":
        backend.apply(np.zeros(count))
        return Sharers(outputs, reference=answers(backend, scoring))
    if privacy == "likelihood":
        backend.apply(np.zeros(count))
        own = [
            replace(scoring, encoded=answered(backend.encoder, scoring.probes, said, scoring.probe_tokens))
            for said in outputs
        ]
        return Sharers(outputs, own=own, before=[backend.mean_logprob(s) for s in own])
    return Sharers(outputs)
