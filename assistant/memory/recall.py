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
from assistant.memory import facts, retrieval, store, told
from assistant.memory.store import Snippet

# A record up to this long is given whole (about 400 tokens); longer ones by passage.
RECORD_WORDS = 300


@dataclass(frozen=True)
class Recalled:
    memory: Snippet  # a whole record (memory.parts lists its snippets) or one passage
    score: float  # retrieval's ranking score
    relevance: float | None  # cosine similarity with the question; None in bm25 mode
    standing: bool = False  # given because it always applies to such a question, not because it answers it


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
    told_floor: float | None = None,
    superseded: str = "newest-or-old",
) -> list[Recalled]:
    """The `k` best records for `query` whose relevance reaches `min_relevance` and, with a
    `margin`, comes within that margin of the most relevant one's (both need vectors: in
    bm25 mode a keyword match is the only test). Records of `task` (the task the message
    asks for) pass whatever their relevance: they show how the user does that task, which
    helps whatever they are about. Records holding any snippet of `exclude` are left out
    (a training example's own record).

    What the user told in chat (told.py) is searched on its own as well, since a store of
    imported notes can bury it: a told fact that shares a telling word with the query needs
    only `told_floor` ("Where do I live?" finds "we now live in Porto" at cosine 0.18, which
    no cut-off for notes could let through). A memory superseded by a newer one is given as
    `superseded` says (_told): "newest-or-old" (shipped), "newest", "hide" or "keep" (as if
    updates were never recognized)."""
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
    if told_floor is not None and index is not None and query_vector is not None:
        for memory, relevance, standing in _told(
            db, query, query_vector, index, told_floor, floor, margin, exclude_conversation, superseded
        ):
            if memory.id not in seen and len(out) < k:
                seen.add(memory.id)
                texts.add(" ".join(memory.text.split()))
                out.append(Recalled(memory, relevance, relevance, standing))
    for hit in hits:
        if len(out) == k:
            break
        if hit.snippet.kind == facts.PREFERENCE:
            continue  # given to every answer apart (replies.with_memory)
        if hit.snippet.superseded_by is not None and (told_floor is not None or superseded != "keep"):
            continue  # what replaced it, if relevant, came with the told facts above
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
    return out


def _told(
    db: sqlite_utils.Database,
    query: str,
    query_vector: np.ndarray,
    index,
    told_floor: float,
    floor: float,
    margin: float | None,
    exclude_conversation: int | None,
    superseded: str,
) -> list[tuple[Snippet, float, bool]]:
    """The user's told facts relevant to `query`, most relevant first: those as close as
    `floor` asks of any memory, and those reaching `told_floor` that share a telling word with
    it or name a thing of the kind it asks about ("Which pet do I have?", "my dog"). A relevant
    memory that was superseded gives its newest successor instead, and itself too when that
    successor is not relevant on its own (the update was about something else: "What's my
    wife's name?" after the holiday she was named in moved). What the user can or cannot eat
    is relevant to every question about food."""
    everything = told.told_memories(db, exclude_conversation)
    if not everything:
        return []
    cosines = index.cosines(query_vector, [m.id for m in everything])
    near = [m for m in everything if cosines.get(m.id, -1.0) >= told_floor]
    worded = told.sharing_a_word(db, query, [m.id for m in near]) | told.of_the_kind_asked(query, everything)
    passing = {m.id for m in everything if cosines.get(m.id, -1.0) >= floor or m.id in worded}
    relevant = set(passing)
    # As for notes: none far below the most relevant one, among the current ones (a statement
    # since replaced does not set the bar for the others).
    reference = [cosines[m.id] for m in everything if m.id in passing and m.superseded_by is None]
    if reference and margin is not None:
        relevant = {i for i in relevant if cosines[i] >= max(reference) - margin}
    # What they can or cannot eat goes with every question about food, whatever its words.
    standing = (
        {m.id for m in everything if facts.is_dietary(m.text)} - relevant if facts.is_about_food(query) else set()
    )
    relevant |= standing
    by_id = {m.id: m for m in everything}
    chosen: dict[int, float] = {}
    for memory in sorted(everything, key=lambda m: -cosines.get(m.id, -1.0)):
        if memory.id not in relevant:
            continue
        score = cosines[memory.id]
        if memory.superseded_by is None:
            chosen.setdefault(memory.id, score)
            continue
        if superseded == "keep":
            chosen.setdefault(memory.id, score)
        elif superseded in ("newest", "newest-or-old"):
            newest = told.newest(db, memory, by_id)
            if newest is not None:
                chosen.setdefault(newest.id, max(score, cosines.get(newest.id, score)))
            if superseded == "newest-or-old" and (newest is None or newest.id not in passing):
                chosen.setdefault(memory.id, score)
    found = {m.id: m for m in store.get_many(db, list(chosen))}
    ranked = sorted(chosen.items(), key=lambda item: (item[0] in standing, -item[1]))
    return [(found[i], s, i in standing) for i, s in ranked if i in found]
