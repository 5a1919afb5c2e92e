"""LaMP question/output pairs written by hand for the benchmark's tests (held-out data in the
LaMP file format, as `python -m bench lamp --lamp QUESTIONS OUTPUTS` reads it)."""

import json

import numpy as np

# The rows the six-item pair's runs compute: its users' own adapters (or their cold start),
# memory, and a merge of the community's adapters.
SIX_ITEM_ROWS = r"^(OPPU|RAG hybrid k=4|PriME \(alpha 0\.5\))$"


def lamp3_pair(folder, users: int) -> tuple:
    """LaMP_3 (review scores): `users` users of one question and a one-item history each."""
    questions = [
        {
            "id": str(310 + i),
            "input": f"What is the score of review {i}: fine",
            "profile": [{"text": "ok", "score": "3"}],
        }
        for i in range(users)
    ]
    golds = [{"id": str(310 + i), "output": str(1 + i % 5)} for i in range(users)]
    (folder / "q.json").write_text(json.dumps(questions))
    (folder / "o.json").write_text(json.dumps({"task": "LaMP_3", "golds": golds}))
    return folder / "q.json", folder / "o.json"


def six_item_pair(folder, name: str = "LaMP_4") -> tuple:
    """LaMP_4 (headlines of articles): one question per user, histories of 6, 6 and 14 items,
    so two users are too small to train an adapter and one is not."""
    words = "storm rates court vaccine election market strike flood summit budget council port".split()
    rng = np.random.default_rng(0)

    def article(i):
        return f"The {words[i % 12]} report came out on day {i}. " + " ".join(rng.choice(words, 30)) + "."

    def headline(i):
        return f"{words[i % 12].title()} " + " ".join(rng.choice(words, 5))

    questions, golds = [], []
    for number, size in enumerate((6, 6, 14)):
        qid = str(300 + number)
        profile = [
            {
                "id": f"{qid}-{i}",
                "title": headline(number * 100 + i),
                "text": article(number * 100 + i),
                "date": f"2015-01-{i + 1:02d}",
            }
            for i in range(size)
        ]
        questions.append(
            {
                "id": qid,
                "input": f"Generate a headline for the following article: {article(999 + number)}",
                "profile": profile,
            }
        )
        golds.append({"id": qid, "output": headline(500 + number)})
    (folder / f"{name}_questions.json").write_text(json.dumps(questions))
    (folder / f"{name}_outputs.json").write_text(json.dumps({"task": "LaMP_4", "golds": golds}))
    return folder / f"{name}_questions.json", folder / f"{name}_outputs.json"
