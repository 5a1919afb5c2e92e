"""Test data for memory: files of every supported kind, and distractor texts."""

from __future__ import annotations

import json
import random
from pathlib import Path

TOPICS = {
    "football": ["the match went to extra time", "our striker scored twice", "the referee gave a penalty"],
    "weather": ["rain is expected all weekend", "the heatwave broke records", "fog closed the airport"],
    "programming": ["the build failed on a missing import", "we refactored the parser", "tests now run in parallel"],
    "travel": ["the train to Porto was delayed", "our hotel had a view of the harbour", "we lost a suitcase in Rome"],
    "music": ["the concert ended with an encore", "I practised scales on the piano", "the band released a new album"],
    "gardening": ["the tomatoes need more sun", "I planted tulip bulbs in October", "slugs ate the lettuce again"],
    "finance": ["the quarterly report is due Friday", "interest rates rose again", "I moved savings to a new account"],
    "cinema": ["the film had a twist ending", "we watched a documentary about whales", "the sequel was disappointing"],
}
FRAMES = [
    "Yesterday {x}, which surprised everyone.",
    "A quick note: {x}.",
    "I keep thinking that {x}.",
    "Someone told me {x}, but I am not sure.",
    "On Monday {x} and nobody was ready.",
]


def distractors(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        topic = rng.choice(list(TOPICS))
        out.append(rng.choice(FRAMES).format(x=rng.choice(TOPICS[topic])) + f" ({topic} note {i})")
    return out


def write_lamp(path: Path, task: str) -> int:
    """A LaMP questions file of the task's shape: two users, the first with a repeated profile.
    Returns how many distinct profile items it holds."""
    item = {
        "LaMP_2": lambda i: {"id": f"m{i}", "description": f"A heist film number {i} in Paris", "tag": "crime"},
        "LaMP_3": lambda i: {"id": f"r{i}", "text": f"Great blender number {i}, very loud", "score": "4"},
        "LaMP_4": lambda i: {
            "id": f"a{i}",
            "title": f"Storm number {i} hits coast",
            "text": f"Winds reached {100 + i} km/h.",
            "date": "2019-03-0" + str(1 + i % 9),
        },
        "LaMP_7": lambda i: {"id": f"t{i}", "text": f"Morning run number {i} done, feeling great"},
    }[task]
    first = [item(i) for i in range(3)]
    second = [item(i) for i in range(3, 5)]
    questions = [
        {"id": "q1", "input": "question one", "profile": first},
        {"id": "q2", "input": "question two", "profile": first},  # LaMP repeats a user's profile
        {"id": "q3", "input": "question three", "profile": second},
    ]
    path.write_text(json.dumps(questions))
    return 5


EML_PLAIN = """From: Ana <ana@example.org>
To: me@example.org
Subject: Dinner on Friday
Date: Tue, 14 May 2024 09:30:00 +0100

Shall we try the new Georgian place on Friday? I booked a table for eight.

> quoted earlier message that should not be imported
"""

EML_HTML = """From: shop@example.org
Subject: Your order
Date: Wed, 15 May 2024 10:00:00 +0000
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<html><body><p>Your order of <b>hiking boots</b> has shipped &amp; arrives Monday.</p></body></html>
"""
