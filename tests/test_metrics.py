"""Each metric against values computed by hand."""

import pytest

from merger.data import metrics


def test_rouge_1_by_hand():
    # prediction: the cat sat (3) / reference: the cat sat on the mat (6); overlap 3 (the, cat, sat)
    # P = 3/3, R = 3/6, F = 2 * 1 * 0.5 / 1.5 = 2/3
    assert metrics.rouge_1("The cat sat", "the cat sat on the mat") == pytest.approx(2 / 3)
    # clipped counts: "the the the" vs "the cat": overlap 1; P = 1/3, R = 1/2, F = 0.4
    assert metrics.rouge_1("the the the", "the cat") == pytest.approx(0.4)
    assert metrics.rouge_1("", "anything") == 0.0


def test_rouge_l_by_hand():
    # LCS("police killed the gunman", "police kill the gunman") = police the gunman (3)
    # P = 3/4, R = 3/4, F = 0.75
    assert metrics.rouge_l("police killed the gunman", "police kill the gunman") == pytest.approx(0.75)
    # order matters for L, not for 1: "gunman the police" vs "police the gunman": LCS 1 ... "the" or a single word
    assert metrics.rouge_l("gunman the police", "police the gunman") == pytest.approx(1 / 3)
    assert metrics.rouge_1("gunman the police", "police the gunman") == pytest.approx(1.0)


def test_tokenization_drops_punctuation_and_case():
    assert metrics.tokens("U.S. Flu-Season, 2024!") == ["u", "s", "flu", "season", "2024"]


def test_accuracy_and_macro_f1_by_hand():
    predictions = ["a", "a", "b", "c"]
    references = ["a", "b", "b", "b"]
    assert metrics.accuracy(predictions, references) == pytest.approx(0.5)
    # label a: tp 1 fp 1 fn 0 -> P .5 R 1 F 2/3; label b: tp 1 fp 0 fn 2 -> P 1 R 1/3 F .5; c: not a reference label
    assert metrics.macro_f1(predictions, references) == pytest.approx((2 / 3 + 0.5) / 2)


def test_mae_rmse_with_a_non_numeric_prediction():
    # errors: |4-5| = 1, |2-2| = 0, "great" -> farthest from 1 is 5 -> 4
    mae, rmse = metrics.mae_rmse(["4", "2", "great"], ["5", "2", "1"])
    assert mae == pytest.approx(5 / 3)
    assert rmse == pytest.approx(((1 + 0 + 16) / 3) ** 0.5)


def test_label_of_free_text():
    labels = ("comedy", "dark comedy", "action")
    assert metrics.label_of("I think it is a dark comedy.", labels) == "dark comedy"
    assert metrics.label_of("Action!", labels) == "action"


def test_one_dispatch_gives_every_task_kind_its_metrics():
    scores = metrics.task_scores("rouge", ["the cat sat", "a dog"], ["the cat sat down", "a dog ran"])
    assert scores["ROUGE-1"] == pytest.approx((metrics.rouge_1("the cat sat", "the cat sat down") + 0.8) / 2)
    # The search's fitness sums the task's metrics, as PriME's code does: 3 of 4 words, in order.
    assert metrics.fitness("rouge", ["the cat sat"], ["the cat sat down"]) == pytest.approx(2 * 6 / 7)
    labels = ("[1]", "[2]")
    assert metrics.task_scores("accuracy", ["It is [1].", "[2]"], ["[1]", "[1]"], labels)["accuracy"] == 0.5
    assert metrics.task_scores("mae", ["4", "2"], ["5", "2"]) == {"MAE": 0.5, "RMSE": pytest.approx(0.5**0.5)}
    # Accuracy 1/2 plus macro-F1 (label [1]: 2/3, label [2]: 0); minus MAE and RMSE (higher is better).
    assert metrics.fitness("accuracy", ["It is [1].", "[2]"], ["[1]", "[1]"], labels) == pytest.approx(0.5 + 1 / 3)
    assert metrics.fitness("mae", ["4", "2"], ["5", "2"]) == pytest.approx(-(0.5 + 0.5**0.5))
    assert metrics.PRIMARY["mae"] == ("MAE", False)
