"""Choosing the community adapters most relevant to this user before the search.

Each community adapter carries a profile vector (the mean embedding of its author's texts);
the user's is the mean of their memory's vectors (their messages and imported writing).
The closest by cosine are merged; the rest would only widen the search.
"""

from __future__ import annotations

import numpy as np
import sqlite_utils

from assistant.adapters import Adapter
from assistant.memory import index as vectors


def embed_user(db: sqlite_utils.Database) -> np.ndarray | None:
    """The user's vector: the mean of their memory's embeddings, after embedding (and storing
    in the index, as retrieval would) whatever is not embedded yet. None for an empty memory."""
    index = vectors.index_for(db)
    index.refresh(db)
    index.sync(db)
    if not len(index.ids):
        return None
    mean = index.matrix.mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def rank(db: sqlite_utils.Database, candidates: list[Adapter]) -> list[tuple[Adapter, float]]:
    """Candidates by relevance, most relevant first (0 for adapters without a profile)."""
    mine = embed_user(db)
    scored = []
    for adapter in candidates:
        profile = adapter.card.get("profile_vector")
        score = float(np.dot(mine, np.asarray(profile, dtype=np.float32))) if mine is not None and profile else 0.0
        scored.append((adapter, score))
    return sorted(scored, key=lambda item: -item[1])
