"""The check before publishing, asking the held-out inputs the way the user is asked them.

`myna ask` gives the model each message with what recall finds for it in the user's history,
laid out by their settings, and decodes with a copy bias towards the words of those notes. An
adapter judged without memory can win the check and then answer the user worse than memory
alone (issue 44: on rte.ie's LaMP_4 history an own adapter answered the held-out inputs better
than the bare model without memory, 0.292 against 0.170 ROUGE-1, and the user's questions worse
than memory alone, 0.180 against 0.301). So the check can ask each held-out input with what
recall gives it from the rest of the history (never the record it was made from: that would
be the answer), decoded the same way. Measured on LaMP_4 it chose worse adapters than the check
without memory (docs/benchmarks.md, "The check asked with memory"), so it is an option, off.
"""

from __future__ import annotations

from dataclasses import replace

from assistant import replies
from assistant.settings import Settings
from merger.data.encoding import Encoded
from merger.search.scoring import LlamaBackend, ScoringSet


def as_served(db, engine, settings: Settings, scoring: ScoringSet, backend: LlamaBackend) -> ScoringSet:
    """`scoring` with each held-out prompt as `myna ask` builds it, and `backend` set to decode
    as `myna ask` decodes; `scoring` itself when the user has memory off. The probes stay as
    they are: the sharers' answers to them, which the privacy term compares with, were made
    without memory."""
    if settings.memory != "on":
        return scoring
    encoded = []
    for example, plain in zip(scoring.examples, scoring.encoded):
        grounded = replies.with_memory(db, engine, settings, example.input, example.conversation, example.own)
        prompt, favoured = replies.one_shot(engine, grounded, scoring.answer_tokens)
        encoded.append(Encoded(prompt + plain.output, [-100] * len(prompt) + plain.output))
        backend.favoured[tuple(prompt)] = favoured
    backend.copy_bias = settings.memory_copy_bias
    return replace(scoring, encoded=encoded)
