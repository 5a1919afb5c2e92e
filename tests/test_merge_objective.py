"""The merge search's objective on hand-computed cases: the task metric of generated answers
(PriME's fitness), and the privacy terms (the closest sharer on probes, PriME's mean over
sharers on the user's own inputs, that mean beyond the model without sharers, how much
likelier a candidate finds the sharers' own answers, and the L1 norm of the weights). A scripted backend stands in for the
model here; the real backends are in test_personalize.py."""

import json

import numpy as np
import pytest

from merger.data.encoding import Encoded
from merger.data.examples import Example
from merger.search import evolution, scoring
from merger.search.options import ANSWER_TOKENS


class Scripted:
    """A backend whose answers are set per weight vector; counts what it is asked."""

    def __init__(self, answers: dict[tuple, list[str]], logprob: float = -2.0) -> None:
        self.answers, self.logprob, self.weights = answers, logprob, None
        self.generated: list[tuple[int, int]] = []  # (prompts, max tokens) of each generate call

    def apply(self, weights) -> None:
        self.weights = tuple(float(w) for w in weights)

    def generate(self, prompts, max_tokens):
        self.generated.append((len(prompts), max_tokens))
        return self.answers[self.weights][: len(prompts)]

    def mean_logprob(self, scoring_set) -> float:
        return self.logprob


USER = [Example("Pie?", "red apple pie", "chat"), Example("Sky?", "blue sky", "chat")]
SHARER_A = ["red apple", "green"]
SHARER_B = ["red apple", "blue sky"]
CANDIDATE = ["red apple", "blue sky"]
TASK = scoring.Objective(metric="task")  # the task's metric with no task named: ROUGE-1 + ROUGE-L


@pytest.fixture
def scoring_set():
    # Token ids do not matter to a scripted backend; one probe, the first held-out prompt.
    encoded = [Encoded([1, 2, 3], [-100, -100, 3]) for _ in USER]
    return scoring.ScoringSet(USER, encoded, [encoded[0].prompt], probe_tokens=4)


def backend():
    return Scripted({(1.0, 0.0): SHARER_A, (0.0, 1.0): SHARER_B, (0.5, 0.5): CANDIDATE})


def backend_at(*weights):
    made = backend()
    made.apply(np.array(weights))
    return made


def test_task_fitness_is_rouge_1_plus_rouge_l_of_the_answers(scoring_set):
    # "red apple" against "red apple pie": 2 words of 3, in order, precision 1, recall 2/3, F 0.8
    # for ROUGE-1 and for ROUGE-L; "blue sky" exact: 1 and 1. Means 0.9 and 0.9, summed.
    value, similarity = scoring.judge(backend_at(0.5, 0.5), scoring_set, [], TASK)
    assert value == pytest.approx(1.8) and similarity is None


def test_the_mean_term_averages_over_sharers_on_every_held_out_input(scoring_set):
    made = backend()
    sharers = scoring.sharer_outputs(made, scoring_set, 2, "mean")
    assert sharers.answers == [SHARER_A, SHARER_B] and sharers.reference is None
    assert made.generated == [(2, ANSWER_TOKENS), (2, ANSWER_TOKENS)], "all held-out inputs, not the probe"
    made.apply(np.array([0.5, 0.5]))
    made.generated.clear()
    value, similarity = scoring.judge(made, scoring_set, sharers, scoring.PUBLISHED)
    # Against A: 1.0 and 0.0 (ROUGE-1 mean 0.5, ROUGE-L 0.5); against B: exact (1 + 1).
    # Mean over sharers: (1.0 + 2.0) / 2.
    assert similarity == pytest.approx(1.5) and value == pytest.approx(1.8)
    assert made.generated == [(2, ANSWER_TOKENS)], "one generation serves the fitness and the penalty"


def test_the_closest_term_takes_the_most_similar_sharer_on_the_probes(scoring_set):
    made = backend()
    sharers = scoring.sharer_outputs(made, scoring_set, 2)
    assert sharers.answers == [SHARER_A[:1], SHARER_B[:1]] and made.generated == [(1, 4), (1, 4)]
    made.apply(np.array([0.5, 0.5]))
    value, similarity = scoring.judge(made, scoring_set, sharers)
    assert value == -2.0 and similarity == pytest.approx(1.0)


def test_the_excess_term_counts_only_what_the_model_without_sharers_did_not_share(scoring_set):
    # Without any community adapter the model answers what sharer A does.
    made = Scripted({(1.0, 0.0): SHARER_A, (0.0, 1.0): SHARER_B, (0.0, 0.0): SHARER_A, (0.5, 0.5): CANDIDATE})
    sharers = scoring.sharer_outputs(made, scoring_set, 2, "excess")
    assert sharers.answers == [SHARER_A, SHARER_B] and sharers.reference == SHARER_A
    made.apply(np.array([0.5, 0.5]))
    excess = scoring.Objective(metric="task", privacy="excess")
    value, similarity = scoring.judge(made, scoring_set, sharers, excess)
    # The candidate against A 1.0, against B 2.0 (as above); the reference against A 2.0 (the
    # same answers), against B 1.0. Beyond the reference: A max(0, 1.0 - 2.0) = 0, B 1.0; mean
    # 0.5 (the mean term says 1.5; without the floor it would be 0).
    assert similarity == pytest.approx(0.5) and value == pytest.approx(1.8)
    # Answers matching no one earn no less than the reference's own zero.
    assert scoring.excess_similarity(["", ""], sharers.answers, sharers.reference) == 0.0
    made.apply(np.zeros(2))
    assert scoring.judge(made, scoring_set, sharers, excess)[1] == 0.0


def test_answers_made_by_one_backend_serve_another_which_only_makes_its_own_reference(scoring_set):
    # The nightly run asks each sharer once (in the search's backend) and checks in llama.cpp
    # against the same texts: the second backend generates only its answers without sharers.
    searched = Scripted({(1.0, 0.0): SHARER_A, (0.0, 1.0): SHARER_B, (0.0, 0.0): SHARER_A})
    made = scoring.sharer_outputs(searched, scoring_set, 2, "excess")
    checking = Scripted({(0.0, 0.0): SHARER_B, (0.5, 0.5): CANDIDATE})
    sharers = scoring.sharer_outputs(checking, scoring_set, 2, "excess", made.answers)
    assert sharers.answers == [SHARER_A, SHARER_B] and sharers.reference == SHARER_B
    assert checking.generated == [(2, ANSWER_TOKENS)], "one generation: the reference, no sharer answered again"
    checking.apply(np.array([0.5, 0.5]))
    # The candidate matches B exactly, as this backend's reference does: nothing beyond it for B;
    # for A the candidate scores 1.0 against the reference's 1.0. The term is 0 here, 0.5 with
    # the first backend's reference (the test above).
    assert scoring.judge(checking, scoring_set, sharers, scoring.Objective("task", None, "excess"))[1] == 0.0


class Letters:
    """An encoder whose token ids are a text's characters; 0 ends a turn."""

    end_of_turn = 0

    def text_ids(self, text: str) -> list[int]:
        return [ord(c) for c in text]


class Likely(Scripted):
    """A scripted backend whose log-probability of a set of examples depends on the weights it
    holds and on the answer the first example ends with."""

    def __init__(self, answers, logprobs: dict[tuple, float]) -> None:
        super().__init__(answers)
        self.logprobs, self.encoder = logprobs, Letters()
        self.scored: list[str] = []

    def mean_logprob(self, scoring_set) -> float:
        said = "".join(chr(i) for i in scoring_set.encoded[0].output if i)
        self.scored.append(said)
        return self.logprobs[(self.weights, said)]


def test_the_likelihood_term_counts_how_much_likelier_the_sharers_answers_became(scoring_set):
    made = Likely(
        {(1.0, 0.0): ["green tea", "x"], (0.0, 1.0): ["blue sky", "y"], (0.5, 0.5): CANDIDATE},
        {
            # Without any community adapter: A's answer (cut to the probe's 4 tokens) -3, B's -2.
            ((0.0, 0.0), "gree"): -3.0,
            ((0.0, 0.0), "blue"): -2.0,
            # The candidate finds A's answer 1 nat per token likelier, B's 0.5 less likely.
            ((0.5, 0.5), "gree"): -2.0,
            ((0.5, 0.5), "blue"): -2.5,
        },
    )
    sharers = scoring.sharer_outputs(made, scoring_set, 2, "likelihood")
    assert sharers.answers == [["green tea"], ["blue sky"]] and made.generated == [(1, 4), (1, 4)], "the probes only"
    assert sharers.before == [-3.0, -2.0]
    assert sharers.own[0].encoded[0].ids == [1, 2, *map(ord, "gree"), 0]  # the probe's prompt, then the answer
    assert sharers.own[0].encoded[0].labels == [-100, -100, *map(ord, "gree"), 0]
    made.apply(np.array([0.5, 0.5]))
    made.generated.clear()
    value, term = scoring.judge(made, scoring_set, sharers, scoring.Objective(metric="task", privacy="likelihood"))
    # A: lift 1.0, 1 - exp(-1) = 0.632; B: lift -0.5, floored at 0. Mean 0.316.
    assert term == pytest.approx((1 - np.exp(-1.0)) / 2) and value == pytest.approx(1.8)
    assert made.generated == [(2, ANSWER_TOKENS)], "the term generates nothing"
    made.apply(np.zeros(2))
    assert scoring.likelihood_lift(made, sharers) == 0.0  # the model without sharers leaks nothing


def test_likelihood_fitness_with_the_mean_term(scoring_set):
    made = backend()
    sharers = scoring.sharer_outputs(made, scoring_set, 2, "mean")
    made.apply(np.array([0.5, 0.5]))
    assert scoring.judge(made, scoring_set, sharers, scoring.Objective(privacy="mean")) == (-2.0, pytest.approx(1.5))
    with pytest.raises(ValueError, match="privacy term"):
        scoring.judge(made, scoring_set, sharers, scoring.Objective(privacy="nearest"))


def test_the_weights_term_is_the_merge_s_l1_norm_and_generates_nothing(scoring_set):
    """LoraHub's regularizer as a privacy term: the L1 norm of the weights (per adapter, each
    adapter's averaged over its layers), with no sharer answer asked for, raced or not."""
    assert scoring.weight_term([0.5, -0.25], 2) == pytest.approx(0.75)
    # Two adapters, three layers each (adapter by adapter): means 0.5 and 0.2.
    assert scoring.weight_term([0.5, 0.5, 0.5, 0.3, -0.3, 0.0], 2) == pytest.approx(0.7)
    made = backend()
    sharers = scoring.sharer_outputs(made, scoring_set, 2, "weights")
    assert not sharers and made.generated == [], "no sharer is asked anything"
    terms = scoring.Objective(privacy="weights")
    evaluate = scoring.Evaluator(made, scoring_set, sharers, terms, adapters=2)
    assert evaluate(np.array([0.5, 0.5])) == (-2.0, pytest.approx(1.0), True)
    assert made.generated == [], "the likelihood fitness generates nothing for it either"
    raced = scoring.Evaluator(made, scoring_set, sharers, replace_metric(terms, "task"), race_alpha=0.5, adapters=2)
    raced.steps = [2, 2]  # the racing path (the scripted backend answers from its first input on)
    utility, term, complete = raced(np.array([0.5, 0.5]))
    assert term == pytest.approx(1.0) and complete and utility == pytest.approx(1.8)


def replace_metric(objective, metric):
    from dataclasses import replace

    return replace(objective, metric=metric)


def test_the_search_pays_alpha_times_the_term():
    points = {(0.0,): (0.2, 0.1), (1.0,): (0.9, 0.8)}

    def evaluate(weights):
        return points[(1.0,) if weights[0] > 0.5 else (0.0,)]

    free = evolution.evolve(evaluate, 1, budget=12, alpha=0.0, optimizer="RandomSearch")
    private = evolution.evolve(evaluate, 1, budget=12, alpha=1.0, optimizer="RandomSearch")
    assert free.best.utility == 0.9 and free.best.fitness == pytest.approx(0.9)
    assert private.best.utility == 0.2 and private.best.fitness == pytest.approx(0.2 - 0.1)


def test_the_search_starts_from_the_base_then_the_given_points():
    asked = []

    def evaluate(weights):
        asked.append(tuple(weights))
        return float(-np.abs(weights - 0.5).sum()), None

    result = evolution.evolve(evaluate, 2, budget=6, optimizer="NGOpt", starts=([0.5, 0.5],))
    assert asked[:2] == [(0.0, 0.0), (0.5, 0.5)]
    assert result.best.weights == (0.5, 0.5), "nothing the search tried beat the uniform start"


def test_any_alpha_takes_the_best_of_every_point_evaluated():
    trials = [
        evolution.Trial((0.0,), 0.2, 0.1, 0.2),
        evolution.Trial((1.0,), 0.9, 0.8, 0.9),
        evolution.Trial((2.0,), 5.0, 0.0, 5.0, complete=False),  # an early stop's estimate never wins
    ]
    assert evolution.best_of(trials, 0.0).weights == (1.0,)
    assert evolution.best_of(trials, 1.0).weights == (0.0,)  # 0.2 - 0.1 against 0.9 - 0.8


# -- racing: the task metric on a growing share of the held-out examples -------------------------


class ByExample:
    """A scripted backend answering each held-out input (prompt [i]) by the weights it holds."""

    def __init__(self, answer) -> None:
        self.answer, self.weights, self.generated = answer, None, []

    def apply(self, weights) -> None:
        self.weights = tuple(float(w) for w in weights)

    def generate(self, prompts, max_tokens):
        self.generated.append(len(prompts))
        return [self.answer(self.weights, p[0]) for p in prompts]


def test_racing_stops_a_candidate_behind_the_best_on_the_same_examples():
    held_out = [Example(f"Q{i}?", f"gold {i}", "chat") for i in range(40)]
    encoded = [Encoded([i], [-100, i]) for i in range(40)]
    scoring_set = scoring.ScoringSet(held_out, encoded, [])
    assert scoring.race_steps(40) == [16, 32, 40] and scoring.race_steps(12) == [12]
    right = {(0.0,): range(40), (1.0,): range(16, 40), (2.0,): range(16)}  # which inputs each answers right

    def answer(weights, i):
        return f"gold {i}" if i in right[weights] else "nothing alike"

    made = ByExample(answer)
    evaluate = scoring.Evaluator(made, scoring_set, [], TASK, race_alpha=0.0)
    assert evaluate([0.0]) == (2.0, None, True) and made.generated == [16, 16, 8]
    made.generated.clear()
    # Wrong on the first 16 (fitness 0 against the best's 2 there): stopped after them.
    assert evaluate([1.0]) == (0.0, None, False) and made.generated == [16]
    made.generated.clear()
    # Right on the first 16 (not behind), half right on 32 (1.0 against 2.0): stopped there.
    assert evaluate([2.0]) == (pytest.approx(1.0), None, False) and made.generated == [16, 16]
    assert evaluate.stopped == 2 and evaluate.best(0.0).weights == (0.0,)
    made.generated.clear()
    assert evaluate([1.0]) == (0.0, None, False) and made.generated == [], "each point is judged once"
    # Without race_alpha (or with likelihood fitness) every candidate answers everything.
    plain = scoring.Evaluator(ByExample(answer), scoring_set, [], TASK)
    assert plain([1.0]) == (pytest.approx(1.2), None, True)


def test_a_search_stopped_before_its_first_trial_has_no_best():
    result = evolution.evolve(lambda w: (0.0, None), 2, budget=4, should_stop=lambda: True)
    assert result.best is None and result.trials == []


def test_kept_answers_are_reused_and_only_new_inputs_are_generated(tmp_path):
    """The answer cache: a stack asked the same prompts again generates nothing; new prompts
    are generated together in one call; another stack, token budget or model is not confused
    with it; the file keeps only what its run used, and a damaged file means answers made again."""
    from merger.search.answer_cache import AnswerCache, Remembered, stack

    class Echo:
        def __init__(self):
            self.calls = []

        def generate(self, prompts, tokens):
            self.calls.append(len(prompts))
            return [f"said {p[0]} in {tokens}" for p in prompts]

    file = tmp_path / "answers.json"
    adapter = tmp_path / "a.gguf"
    adapter.write_bytes(b"weights")
    echo, night = Echo(), AnswerCache(file, "model")
    named = stack("Echo", adapter)
    assert named == stack("Echo", tmp_path / "a.gguf") != stack("Echo", None) != stack("Other", adapter)
    assert night.answers(echo, [[1], [2]], 8, named) == ["said 1 in 8", "said 2 in 8"]
    night.answers(echo, [[9]], 8, "another stack")
    night.save()
    echo, next_night = Echo(), AnswerCache(file, "model")
    assert next_night.answers(echo, [[2], [3], [1], [4]], 8, named) == [f"said {n} in 8" for n in (2, 3, 1, 4)]
    assert echo.calls == [2] and (next_night.made, next_night.reused) == (2, 2)
    next_night.answers(echo, [[1]], 16, named)  # a longer answer is another answer
    AnswerCache(file, "another model").answers(echo, [[1]], 8, named)
    assert echo.calls == [2, 1, 1]
    next_night.save()
    assert len(json.loads(file.read_text())) == 5, "what this run used; not the other stack's answer"
    file.write_text('{"cut sho')
    assert AnswerCache(file, "model").answers(echo, [[1]], 8, named) == ["said 1 in 8"] and echo.calls[-1] == 1
    # Through a backend: only named stacks go through the cache.
    alone = lambda weights: "one" if list(weights) == [1.0] else None  # noqa: E731
    view = Remembered(Scripted({(1.0,): ["x"], (0.5,): ["y"]}), AnswerCache(file, "model"), alone)
    view.apply([1.0])
    view.generate([[5]], 4), view.generate([[5]], 4)
    view.apply([0.5])
    view.generate([[5]], 4)
    assert view.backend.generated == [(1, 4), (1, 4)] and view.logprob == -2.0
