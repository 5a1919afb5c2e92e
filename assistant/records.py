"""What a remembered record is an example of: its task's input -> output pair.

A record that belongs to a task (an article and the headline it got, an e-mail and its
subject, a tweet as its account wrote it) can be shown to the model as a demonstration of
that task, the way LaMP's profile prompts do, and trained on in the same form (OPPU). The one
mapping from a record's kind to that pair is here, used by the memory prompt
(assistant/prompt.py) and by the training examples (merger/data/examples.py).

Records are stored as their reader wrote them (assistant/memory/readers.py): a title, subject
or headline on the first line, then the body; a review or a movie ends with its "Rating:" or
"Tag:" line.
"""

from __future__ import annotations

from dataclasses import dataclass

from assistant.tasks import plain_version, prompt

# Kinds of LaMP profile items by task, as `myna import` stores them.
LAMP_KINDS = {
    "LaMP_1": "lamp paper",
    "LaMP_2": "lamp movie tag",
    "LaMP_3": "lamp review",
    "LaMP_4": "lamp article",
    "LaMP_5": "lamp paper",
    "LaMP_6": "lamp email",
    "LaMP_7": "lamp post",
}


@dataclass(frozen=True)
class Pair:
    task: str
    input: str
    output: str


def task_pair(kind: str, text: str) -> Pair | None:
    """The record as an example of its task; None when it belongs to no task (a note)."""
    head, _, rest = text.partition("\n")
    rest = rest.strip()
    lines = text.rstrip().splitlines()
    if kind == "lamp article" and rest:
        return Pair("LaMP_4", prompt("LaMP_4", text=rest), head.strip())
    if kind == "lamp paper" and rest:
        return Pair("LaMP_5", prompt("LaMP_5", abstract=rest), head.strip())
    if kind in ("lamp email", "email") and rest:
        subject = head.strip().removeprefix("Subject: ") if kind == "email" else head.strip()
        return Pair("LaMP_6", prompt("LaMP_6", text=rest), subject) if subject else None
    if kind == "lamp review" and len(lines) > 1 and lines[-1].startswith("Rating: "):
        body = "\n".join(lines[:-1]).strip()
        return Pair("LaMP_3", prompt("LaMP_3", text=body), lines[-1].removeprefix("Rating: ").strip())
    if kind == "lamp movie tag" and len(lines) > 1 and lines[-1].startswith("Tag: "):
        body = "\n".join(lines[:-1]).strip()
        return Pair("LaMP_2", prompt("LaMP_2", description=body), lines[-1].removeprefix("Tag: ").strip())
    if kind == "lamp post":
        plain = plain_version(text)
        return Pair("LaMP_7", prompt("LaMP_7", text=plain), text.strip()) if plain and plain != text.strip() else None
    return None


def demonstration_of(kind: str, text: str, task: str | None) -> Pair | None:
    """The record as a demonstration of `task`, when it belongs to that task; else None."""
    pair = task_pair(kind, text) if task else None
    return pair if pair is not None and pair.task == task else None
