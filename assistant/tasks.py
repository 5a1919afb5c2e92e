"""The tasks a personal model is taught and tested on, as prompt templates.

One place, so that training examples (merger/data/examples.py), merge scoring, the memory prompt
(assistant/prompt.py) and the benchmark (bench/) phrase every task identically. Templates
follow the LaMP benchmark's inputs; the tweet task uses a self-supervised pair (see
`plain_version`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    template: str  # str.format with the fields named in it
    metric: str  # "accuracy", "mae" or "rouge"
    labels: tuple[str, ...] = ()


TASKS = {
    "LaMP_1": Task(
        "LaMP_1",
        'For an author who has written the paper with the title "{title}", which reference is related? '
        'Just answer with [1] or [2] without explanation. [1]: "{option1}" [2]: "{option2}"',
        "accuracy",
        ("[1]", "[2]"),
    ),
    "LaMP_2": Task(
        "LaMP_2",
        "Which tag does this movie relate to among the following tags? Just answer with the tag name "
        "without further explanation. tags: [sci-fi, based on a book, comedy, action, twist ending, dystopia, "
        "dark comedy, classic, psychology, fantasy, romance, thought-provoking, social commentary, violence, "
        "true story] description: {description}",
        "accuracy",
        (
            "sci-fi",
            "based on a book",
            "comedy",
            "action",
            "twist ending",
            "dystopia",
            "dark comedy",
            "classic",
            "psychology",
            "fantasy",
            "romance",
            "thought-provoking",
            "social commentary",
            "violence",
            "true story",
        ),
    ),
    "LaMP_3": Task(
        "LaMP_3",
        "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, "
        "or 5 without further explanation. review: {text}",
        "mae",
        ("1", "2", "3", "4", "5"),
    ),
    "LaMP_4": Task("LaMP_4", "Generate a headline for the following article: {text}", "rouge"),
    "LaMP_5": Task("LaMP_5", "Generate a title for the following abstract of a paper: {abstract}", "rouge"),
    "LaMP_6": Task("LaMP_6", "Generate a subject for the following email: {text}", "rouge"),
    "LaMP_7": Task(
        "LaMP_7", "Paraphrase the following tweet without any explanation before or after it: {text}", "rouge"
    ),
}


def prompt(task: str, **fields: str) -> str:
    return TASKS[task].template.format(**fields)


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


# What a message of each task starts with: the first words of its template (enough to tell
# the tasks apart, few enough to survive a reworded tail such as another tag list).
_OPENINGS = {name: " ".join(_normal(task.template).split()[:7]) for name, task in TASKS.items()}


def content_of(message: str, task: str) -> str:
    """What a task message is about, without the task's instructions around it: the article
    of a headline request, the tweet to paraphrase (what memory is searched with)."""
    template = TASKS[task].template
    before = template.split("{", 1)[0]
    after = template.rsplit("}", 1)[1]
    # The instructions are matched loosely (spacing, case), as in task_of.
    text = message.strip()
    if _normal(text).startswith(_normal(before)):
        text = (
            text[len(before) :] if text.lower().startswith(before.lower()) else _strip_words(text, len(before.split()))
        )
    if after.strip() and _normal(text).endswith(_normal(after)):
        text = text[: len(text) - len(after.rstrip())]
    return text.strip().strip('"').strip() or message


def _strip_words(text: str, count: int) -> str:
    return " ".join(text.split()[count:])


def task_of(message: str) -> str | None:
    """The task a message asks for, when it is phrased the way that task is (a LaMP input,
    say); None for anything else, which is most of what people type."""
    start = _normal(message[:400])
    for name, opening in _OPENINGS.items():
        if start.startswith(opening):
            return name
    return None


_URL = re.compile(r"https?://\S+")
_HANDLE_OR_TAG = re.compile(r"[@#](\w+)")
_NOT_WORDS = re.compile(r"[^\w\s'.,!?%$-]")


def plain_version(tweet: str) -> str:
    """A tweet without what marks its author's style: links, handles, hashtags, emoji, case.

    Training on (plain version -> original) teaches "say this as I would", which is what the
    tweet-paraphrasing task asks, from nothing but the user's own tweets.
    """
    text = _URL.sub("", tweet)
    text = _HANDLE_OR_TAG.sub(r"\1", text)
    text = _NOT_WORDS.sub(" ", text)
    return " ".join(text.lower().split())
