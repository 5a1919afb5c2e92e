"""What an answer is given from memory: whole records, relevant enough, best first.

Retrieval (retrieval.py) ranks snippets; an answer needs records. A note, an e-mail or a
profile item is given whole when it is short enough (its title and body stay together, however
the importer cut it), a long document by the passage that matched. A record found through
several of its snippets counts once, and so does a text remembered several times (a question
asked again is stored again; four copies of it would fill the prompt). Anything less similar
to the question than the cut-off is left out, so a question about nothing remembered gets
nothing, and shows no sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection

import numpy as np
import sqlite_utils

from assistant import input_text, records
from assistant.memory import retrieval, store
from assistant.memory.store import Snippet

# A record up to this long is given whole (about 400 tokens); longer ones by passage.
RECORD_WORDS = 300


@dataclass(frozen=True)
class Recalled:
    memory: Snippet  # a whole record (memory.parts lists its snippets) or one passage
    score: float  # retrieval's ranking score
    relevance: float | None  # cosine similarity with the question; None in bm25 mode


def recall(
    db: sqlite_utils.Database,
    query: str,
    *,
    k: int,
    mode: str = "hybrid",
    recency: float = 0.0,
    min_relevance: float = 0.0,
    margin: float | None = None,
    task: str | None = None,
    exclude_conversation: int | None = None,
    exclude: Collection[int] = (),
    query_vector: np.ndarray | None = None,
    record_words: int = RECORD_WORDS,
) -> list[Recalled]:
    """The `k` best records for `query` whose relevance reaches `min_relevance` and, with a
    `margin`, comes within that margin of the most relevant one's (both need vectors: in
    bm25 mode a keyword match is the only test). Records of `task` (the task the message
    asks for) pass whatever their relevance: they show how the user does that task, which
    helps whatever they are about. Records holding any snippet of `exclude` are left out
    (a training example's own record)."""
    if k <= 0 or store.count(db) == 0:
        return []
    query = input_text.text(query)
    index = None
    if mode != "bm25":
        index, query_vector = retrieval.prepare_dense(db, query, query_vector)
    # Several snippets of one record can rank high: ask for more than k to fill k records.
    hits = retrieval.search(
        db,
        query,
        k=max(3 * k, 12),
        mode=mode,
        recency=recency,
        exclude_conversation=exclude_conversation,
        query_vector=query_vector,
    )
    cosines = (
        index.cosines(query_vector, [h.snippet.id for h in hits])
        if index is not None and query_vector is not None
        else {}
    )
    floor = min_relevance
    if margin is not None and cosines:
        floor = max(floor, max(cosines.values()) - margin)
    out: list[Recalled] = []
    seen: set[int] = set(exclude)
    texts: set[str] = set()
    for hit in hits:
        relevance = cosines.get(hit.snippet.id) if index is not None else None
        memory = store.whole_record(db, hit.snippet, record_words)
        text = " ".join(memory.text.split())  # the same words, however spaced
        if seen & set(memory.ids) or text in texts:
            continue
        if (
            relevance is not None
            and relevance < floor
            and records.demonstration_of(memory.kind, memory.text, task) is None
        ):
            continue
        seen.update(memory.ids)
        texts.add(text)
        out.append(Recalled(memory, hit.score, relevance))
        if len(out) == k:
            break
    return out
