"""The user's feedback on a reply, and what memory keeps of that reply because of it.

A reply becomes a memory only once the user vouches for it: rated good, or corrected (then
the correction is what is remembered). Rating it bad or neutral again forgets it.
"""

from __future__ import annotations

import sqlite_utils

from assistant.memory import store as memory_store
from assistant.store import conversations as convs


def give(
    db: sqlite_utils.Database, message_id: int, *, rating: int | None = None, correction: str | None = None
) -> None:
    """Record a rating (-1, 0, +1) and/or a correction of a reply; MynaError when the message
    is not a reply or the rating is not one of those."""
    convs.set_feedback(db, message_id, rating=rating, correction=correction)
    memory_store.remember_reply(db, message_id)
