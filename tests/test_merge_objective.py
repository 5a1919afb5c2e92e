"""The merge search's objective on hand-computed cases: the task metric of generated answers
(PriME's fitness), and the two privacy terms (the closest sharer on probes, PriME's mean over
sharers on the user's own inputs). A scripted backend stands in for the model here; the real
backends are in test_personalize.py."""

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
TASK = scoring.Objective(metric="task")  # the task's metric with no task named: ROUGE-L


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


def test_task_fitness_is_the_rouge_l_of_the_answers(scoring_set):
    # "red apple" against "red apple pie": LCS 2, precision 1, recall 2/3, F 0.8; "blue sky" exact: 1.
    value, similarity = scoring.judge(backend_at(0.5, 0.5), scoring_set, [], TASK)
    assert value == pytest.approx(0.9) and similarity is None


def test_the_mean_term_averages_over_sharers_on_every_held_out_input(scoring_set):
    made = backend()
    sharers = scoring.sharer_outputs(made, scoring_set, 2, "mean")
    assert sharers == [SHARER_A, SHARER_B]
    assert made.generated == [(2, ANSWER_TOKENS), (2, ANSWER_TOKENS)], "all held-out inputs, not the probe"
    made.apply(np.array([0.5, 0.5]))
    made.generated.clear()
    value, similarity = scoring.judge(made, scoring_set, sharers, scoring.PUBLISHED)
    # Against A: 1.0 and 0.0; against B: 1.0 and 1.0. Mean over sharers: (0.5 + 1.0) / 2.
    assert similarity == pytest.approx(0.75) and value == pytest.approx(0.9)
    assert made.generated == [(2, ANSWER_TOKENS)], "one generation serves the fitness and the penalty"


def test_the_closest_term_takes_the_most_similar_sharer_on_the_probes(scoring_set):
    made = backend()
    sharers = scoring.sharer_outputs(made, scoring_set, 2)
    assert sharers == [SHARER_A[:1], SHARER_B[:1]] and made.generated == [(1, 4), (1, 4)]
    made.apply(np.array([0.5, 0.5]))
    value, similarity = scoring.judge(made, scoring_set, sharers)
    assert value == -2.0 and similarity == pytest.approx(1.0)


def test_likelihood_fitness_with_the_mean_term(scoring_set):
    made = backend()
    sharers = scoring.sharer_outputs(made, scoring_set, 2, "mean")
    made.apply(np.array([0.5, 0.5]))
    assert scoring.judge(made, scoring_set, sharers, scoring.Objective(privacy="mean")) == (-2.0, pytest.approx(0.75))
    with pytest.raises(ValueError, match="privacy term"):
        scoring.judge(made, scoring_set, sharers, scoring.Objective(privacy="nearest"))


def test_the_search_pays_alpha_times_the_term():
    points = {(0.0,): (0.2, 0.1), (1.0,): (0.9, 0.8)}

    def evaluate(weights):
        return points[(1.0,) if weights[0] > 0.5 else (0.0,)]

    free = evolution.evolve(evaluate, 1, budget=12, alpha=0.0, optimizer="RandomSearch")
    private = evolution.evolve(evaluate, 1, budget=12, alpha=1.0, optimizer="RandomSearch")
    assert free.best.utility == 0.9 and free.best.fitness == pytest.approx(0.9)
    assert private.best.utility == 0.2 and private.best.fitness == pytest.approx(0.2 - 0.1)
