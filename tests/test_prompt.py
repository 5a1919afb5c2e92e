import pytest

from assistant import prompt as prompts
from assistant.errors import MynaError


def count_words(chat):
    return list(range(sum(len(m["content"].split()) + 3 for m in chat)))


def history(n_turns, words=10):
    turns = []
    for i in range(n_turns):
        turns.append(prompts.Turn("user", " ".join([f"q{i}"] * words)))
        turns.append(prompts.Turn("assistant", " ".join([f"a{i}"] * words)))
    return turns


def test_everything_fits():
    built = prompts.fit(count_words, system="be kind", history=history(3), user_text="now", budget=1000)
    assert built.dropped == 0
    assert [m["role"] for m in built.chat] == ["system"] + ["user", "assistant"] * 3 + ["user"]


def test_oldest_whole_turns_are_dropped_first():
    turns = history(10)  # each turn (question + answer) is 26 tokens
    built = prompts.fit(count_words, system="sys", history=turns, user_text="now", budget=120)
    assert built.dropped % 2 == 0, "never cut between a question and its answer"
    kept = built.chat[1:-1]
    assert kept[0]["role"] == "user"
    assert kept[-1]["content"].startswith("a9"), "the most recent turn is kept"
    assert len(built.tokens) <= 120
    # The binary search finds the longest history that fits: one more turn would not.
    more = prompts.build_chat("sys", turns[built.dropped - 2 :], "now")
    assert len(count_words(more)) > 120


def test_binary_search_matches_a_linear_scan():
    turns = history(25, words=7)
    for budget in range(20, 500, 37):
        try:
            built = prompts.fit(count_words, system="s", history=turns, user_text="x y", budget=budget)
        except MynaError:
            assert len(count_words(prompts.build_chat("s", [], "x y"))) > budget
            continue
        linear = next(
            cut
            for cut in range(0, len(turns) + 1, 2)
            if len(count_words(prompts.build_chat("s", turns[cut:], "x y"))) <= budget
        )
        assert built.dropped == linear


def test_a_message_longer_than_the_context_is_refused():
    with pytest.raises(MynaError, match="shorten it"):
        prompts.fit(count_words, system="s", history=[], user_text="word " * 500, budget=100)


def test_empty_and_huge_messages():
    with pytest.raises(MynaError, match="nothing to answer"):
        prompts.check_user_text("  \n ", 1024)
    with pytest.raises(MynaError, match="far more than"):
        prompts.check_user_text("x" * (1024 * prompts.MAX_CHARS_PER_TOKEN + 1), 1024)
    assert prompts.check_user_text("fine", 1024) == "fine"


def test_reply_reserve_is_at_most_half_the_context():
    assert prompts.reply_reserve(4096, 512) == 512
    assert prompts.reply_reserve(1024, 4000) == 512
