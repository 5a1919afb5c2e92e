"""What the user tells Myna in chat: remembered as facts and preferences, the newest current.

Every user message is sifted (facts.py); what it tells becomes memories with the message as
their source: one memory for the message's facts (so "she" still finds "my sister Mia"), one
for each preference about answers. A new memory about the same thing as an older one (the
standup's time, the address, the job) supersedes it: the older one stays, with the id of the
one that replaced it, but answers are given the newest (recall.py). Nothing is deleted, so a
wrong guess costs the user one `myna memory delete` of the newer memory, which makes the older
one current again.

"The same thing" is decided by meaning and wording together (`same_thing`), chosen on the
conversation benchmark (`python -m bench conversation`, docs/conversation-memory.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import sqlite_utils

from assistant.hashing import text_hash
from assistant.memory import chunking, facts
from assistant.memory import store as memory_store
from assistant.memory.store import Snippet
from assistant.store.conversations import now
from assistant.store.transaction import transaction

KINDS = (facts.FACT, facts.PREFERENCE)
# Supersession compares a new memory with this many of the newest current ones (a person's chat
# facts number in the hundreds; a pasted document's thousands of sentences are not facts).
COMPARED = 2000


@dataclass(frozen=True)
class Remembered:
    """A memory a message left, and the older ones it superseded."""

    memory: Snippet
    replaced: tuple[Snippet, ...] = ()

    @property
    def told(self) -> str:
        """As Myna says it back: "you adopted a dog called Biscuit"."""
        return facts.as_told(self.memory.text)

    @property
    def summary(self) -> str:
        """One line for the user: what was remembered, and what it replaced."""
        kind = "your preference: " if self.memory.kind == facts.PREFERENCE else ""
        line = f"{kind}{memory_store.one_line(self.told, 120)}"
        if self.replaced:
            olds = "; ".join(f'"{old.preview(60)}"' for old in self.replaced)
            line += f" (replacing what you said before: {olds})"
        return line


def pieces(text: str) -> list[facts.Said]:
    """What a message leaves in memory: its facts as one memory (cut where a long message
    would not fit one snippet), each preference as its own."""
    said = facts.extract(text)
    told = " ".join(s.text for s in said if s.kind == facts.FACT)
    out = [facts.Said(part, facts.FACT) for part in (chunking.split(told) if told else [])]
    return out + [s for s in said if s.kind == facts.PREFERENCE]


def store(
    db: sqlite_utils.Database, message_id: int, said: Sequence[facts.Said], *, date: str | None = None, start: int = 0
) -> list[int]:
    """Insert what a message said as its memories (in the caller's transaction), numbered from
    `start`, dated `date` (default today); their ids."""
    ids = []
    for position, piece in enumerate(said, start=start):
        cursor = db.execute(
            """INSERT INTO snippets (message_id, position, kind, text, date, content_hash, created_at)
               VALUES (?, ?, ?, ?, COALESCE(?, date('now')), ?, ?)""",
            (message_id, position, piece.kind, piece.text, date, text_hash(piece.text), now()),
        )
        ids.append(cursor.lastrowid)
    return ids


def remember(db: sqlite_utils.Database, message_id: int, text: str) -> list[Remembered]:
    """Remember what a stored user message tells, and supersede what it updates."""
    with transaction(db):
        ids = store(db, message_id, pieces(text))
    return supersede(db, ids)


# -- updates --------------------------------------------------------------------------------------

# Words with which people say that something changed.
_UPDATE_CUES = re.compile(
    r"\b(?:(?<!right )(?<!for )(?<!just )now|no longer|any ?more|moved|move|changed|change|switched|switch|instead|update|updated|actually|"
    r"new|from now on|starting|from next|raised|lowered|quit|left|sold|finally|these days|not any|became|become)\b",
    re.IGNORECASE,
)
# People a statement is about. Two statements about different ones are never the same thing
# ("my brother ..." does not update "my sister ..."), unless one word covers the other ("my
# parents" and "mum").
_KIN = frozenset(
    """mother mum mom father dad parents sister brother son daughter kids children wife husband partner boyfriend
    girlfriend fiancé fiancée grandmother grandma granny grandfather grandpa grandparents grandson granddaughter
    grandchildren aunt uncle cousin niece nephew friend colleague boss neighbour neighbor landlord flatmate
    roommate doctor gp dentist teacher""".split()
)
_COVERS = {
    "parents": {"mother", "mum", "mom", "father", "dad"},
    "kids": {"son", "daughter"},
    "children": {"son", "daughter"},
    "grandparents": {"grandmother", "grandma", "granny", "grandfather", "grandpa"},
    "grandchildren": {"grandson", "granddaughter"},
    "partner": {"wife", "husband", "boyfriend", "girlfriend", "fiancé", "fiancée"},
}
# Measured on the conversation benchmark's pairs of statements (docs/conversation-memory.md).
SAME_WITHOUT_CUE = 0.62  # cosine at which two statements are about the same thing
SAME_WITH_CUE = 0.45  # ... when the newer one says that something changed
SAME_WITH_CUE_AND_WORD = 0.30  # ... and names something the older one named ("I sold the Yaris")


def _names(text: str) -> set[str]:
    """Capitalized words past the first: the people, places and things a statement names."""
    words = re.findall(r"[\w'’-]+", text)[1:]
    return {
        re.sub(r"['’]s$", "", w.lower()) for w in words if w[:1].isupper() and w != "I" and w[:2] not in ("I'", "I’")
    }


def _kin(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-zé]+", text.lower()) if w in _KIN}


def _same_people(newer: set[str], older: set[str]) -> bool:
    if not newer or not older or newer & older:
        return True
    covered = lambda a, b: any(b & _COVERS.get(w, set()) for w in a)  # noqa: E731
    return covered(newer, older) or covered(older, newer)


def _telling_words(text: str) -> set[str]:
    """A statement's content words, roughly stemmed, without the words that say a change."""
    words = {w for w in facts.content_words(text) if not _UPDATE_CUES.fullmatch(w)}
    return {re.sub(r"(?:ies|es|s|ing|ed)$", "", w) or w for w in words}


def same_thing(newer: str, older: str, cosine: float) -> bool:
    """Whether `newer` updates `older`: close in meaning; closer still unless it says something
    changed and names something the older one named; never about different people."""
    if not _same_people(_kin(newer), _kin(older)):
        return False
    if not _UPDATE_CUES.search(newer):
        names_new, names_old = _names(newer), _names(older)
        if names_new and names_old and not names_new & names_old:
            return False
        return cosine >= SAME_WITHOUT_CUE
    if _telling_words(newer) & _telling_words(older):
        return cosine >= SAME_WITH_CUE_AND_WORD
    return cosine >= SAME_WITH_CUE


def current(db: sqlite_utils.Database, *, before: int | None = None, limit: int = COMPARED) -> list[Snippet]:
    """The user's current told memories (none superseded), newest first."""
    marks = ",".join("?" * len(KINDS))
    where = f"s.message_id IS NOT NULL AND s.kind IN ({marks}) AND s.superseded_by IS NULL"
    params: list = list(KINDS)
    if before is not None:
        where += " AND s.id < ?"
        params.append(before)
    # The partial index of told memories: the planner would otherwise walk every imported snippet.
    rows = db.execute(
        f"SELECT s.id FROM snippets s INDEXED BY snippets_told WHERE {where} ORDER BY s.id DESC LIMIT ?",
        [*params, limit],
    )
    return memory_store.get_many(db, [row[0] for row in rows])


def vectors(db: sqlite_utils.Database, snippets: Sequence[Snippet]) -> dict[int, np.ndarray]:
    """Each snippet's vector: the stored one, or computed now and stored (a new memory's)."""
    from assistant import embeddings
    from assistant.memory import index

    found: dict[int, np.ndarray] = {}
    todo: dict[str, list[int]] = {}  # content hash -> snippets without a vector
    texts: dict[str, str] = {}
    ids = [s.id for s in snippets]
    for start in range(0, len(ids), 500):
        batch = ids[start : start + 500]
        rows = db.execute(
            f"""SELECT s.id, s.content_hash, s.text, e.vector FROM snippets s
                LEFT JOIN embeddings e ON e.content_hash = s.content_hash WHERE s.id IN ({",".join("?" * len(batch))})""",
            batch,
        )
        for snippet_id, content_hash, text, vector in rows:
            if vector is None:
                todo.setdefault(content_hash, []).append(snippet_id)
                texts[content_hash] = text
            else:
                found[snippet_id] = np.frombuffer(vector, dtype="<f4", count=embeddings.DIM)
    if todo:
        hashes = list(todo)
        computed = index.embed_texts([texts[h] for h in hashes])
        with transaction(db):
            index.store(db, hashes, computed)
        found.update({i: vector for h, vector in zip(hashes, computed) for i in todo[h]})
    return found


def supersede(db: sqlite_utils.Database, new_ids: Sequence[int]) -> list[Remembered]:
    """Mark the older current memories that these new ones update; what each new one replaced.
    The embedder is only loaded when there is something older to compare with."""
    new = memory_store.get_many(db, list(new_ids))
    if not new:
        return []
    older = [o for o in current(db, before=min(new_ids)) if o.message_id != new[0].message_id]
    if not older:
        return [Remembered(m) for m in new]
    found = vectors(db, [*new, *older])
    replaced: dict[int, list[Snippet]] = {m.id: [] for m in new}
    for memory in new:
        if memory.id not in found:
            continue
        for old in older:
            if old.id in found and old.kind == memory.kind:
                cosine = float(found[memory.id] @ found[old.id])
                if same_thing(memory.text, old.text, cosine):
                    replaced[memory.id].append(old)
    stamp = now()
    with transaction(db):
        for memory_id, olds in replaced.items():
            db.conn.executemany(
                "UPDATE snippets SET superseded_by = ?, superseded_at = ? WHERE id = ? AND superseded_by IS NULL",
                [(memory_id, stamp, old.id) for old in olds],
            )
    return [Remembered(m, tuple(replaced[m.id])) for m in new]


def history(db: sqlite_utils.Database, snippet: Snippet) -> tuple[list[Snippet], list[Snippet]]:
    """(the memories this one replaced, the chain of those that replaced it, newest last)."""
    earlier = [
        memory_store.get(db, row[0])
        for row in db.execute("SELECT id FROM snippets WHERE superseded_by = ? ORDER BY id", (snippet.id,))
    ]
    later: list[Snippet] = []
    successor = snippet.superseded_by
    while successor is not None and len(later) < 100:
        found = memory_store.get_many(db, [successor])
        if not found:
            break
        later.append(found[0])
        successor = found[0].superseded_by
    return earlier, later


def lineage(db: sqlite_utils.Database, snippet: Snippet) -> list[str]:
    """Where a told memory stands, for `myna memory show` and the memory screen: what replaced
    it, and what it replaced."""
    earlier, later = history(db, snippet)
    lines = []
    if later:
        lines.append(f"Replaced by [{later[0].id}] ({later[0].date or 'undated'}): {later[0].preview()}")
        if later[-1].id != later[0].id:
            lines.append(f"Current now: [{later[-1].id}] ({later[-1].date or 'undated'}): {later[-1].preview()}")
    for old in earlier:
        lines.append(f"Replaces [{old.id}] ({old.date or 'undated'}): {old.preview()}")
    return lines


def left_by(db: sqlite_utils.Database, message_id: int) -> list[Snippet]:
    """The memories a user message left (current or not), in order."""
    rows = db.execute(
        f"SELECT id FROM snippets WHERE message_id = ? AND kind IN ({','.join('?' * len(KINDS))}) ORDER BY position",
        (message_id, *KINDS),
    )
    return memory_store.get_many(db, [row[0] for row in rows])


def preferences(db: sqlite_utils.Database) -> list[Snippet]:
    """The user's current preferences about answers, oldest first (the newest is said last)."""
    rows = db.execute(
        "SELECT id FROM snippets WHERE message_id IS NOT NULL AND kind = ? AND superseded_by IS NULL ORDER BY id",
        (facts.PREFERENCE,),
    )
    return memory_store.get_many(db, [row[0] for row in rows])


# -- finding what was told -------------------------------------------------------------------------


def told_memories(db: sqlite_utils.Database, exclude_conversation: int | None = None) -> list[Snippet]:
    """Every told fact, current or superseded (not preferences: those go to every answer),
    outside a conversation."""
    sql = "SELECT s.id FROM snippets s JOIN messages m ON m.id = s.message_id WHERE s.message_id IS NOT NULL AND s.kind = ?"
    params: list = [facts.FACT]
    if exclude_conversation is not None:
        sql += " AND m.conversation_id != ?"
        params.append(exclude_conversation)
    return memory_store.get_many(db, [row[0] for row in db.execute(sql, params)])


def newest(db: sqlite_utils.Database, memory: Snippet, known: dict[int, Snippet] | None = None) -> Snippet | None:
    """The newest memory in the chain of those that superseded `memory`."""
    found, steps = None, 0
    successor = memory.superseded_by
    while successor is not None and steps < 100:
        step = (known or {}).get(successor) or next(iter(memory_store.get_many(db, [successor])), None)
        if step is None:
            break
        found, successor, steps = step, step.superseded_by, steps + 1
    return found


def sharing_a_word(db: sqlite_utils.Database, query: str, ids: Sequence[int]) -> set[int]:
    """Those of these snippets that contain one of the query's telling words (stemmed, as the
    full-text index has them; question words, pronouns and words like "name" left out)."""
    from assistant.store.words import terms_and_words

    if not ids:
        return set()
    terms = {t: w for t, w in terms_and_words(db, query).items() if w not in facts.VAGUE_WORDS}
    if not terms:
        return set()
    match = " OR ".join('"' + word.replace('"', '""') + '"' for word in terms.values())
    found: set[int] = set()
    for start in range(0, len(ids), 500):
        batch = list(ids[start : start + 500])
        rows = db.execute(
            f"SELECT rowid FROM snippets_fts WHERE snippets_fts MATCH ? AND rowid IN ({','.join('?' * len(batch))})",
            [match, *batch],
        )
        found.update(row[0] for row in rows)
    return found


def dont_know(question: str) -> str:
    """The honest reply to a question about the user that nothing remembered answers."""
    about = facts.subject_of(question)
    told = f"about {facts.as_told(about)}" if about else "that"
    return f"I don't know yet: you haven't told me {told}. Tell me in a message and I'll remember it for next time."


# How close a word of a told fact must be to the description of a kind the question asks for
# (facts.KINDS: "pet animal" and "dog", "musical instrument" and "cello", "job work profession"
# and "nurse" are above it; "car vehicle" and "dog" below), measured with the memory's embedder.
OF_THE_KIND = 0.45
_word_vectors: dict[str, np.ndarray] = {}  # per process: a chat app asks many questions


def _vectors_of(texts: list[str]) -> dict[str, np.ndarray]:
    from assistant.embeddings import embedder

    todo = [t for t in texts if t not in _word_vectors]
    if todo:
        for text, vector in zip(todo, embedder().embed(todo)):
            _word_vectors[text] = vector
        while len(_word_vectors) > 50_000:
            _word_vectors.pop(next(iter(_word_vectors)))
    return {t: _word_vectors[t] for t in texts}


def of_the_kind_asked(query: str, memories: Sequence[Snippet]) -> set[int]:
    """Those memories that name a thing of a kind the query asks for (facts.KINDS)."""
    kinds = facts.kind_words(query)
    if not kinds or not memories:
        return set()
    described = sorted({facts.KINDS[k] for k in kinds})
    words = {m.id: [w for w in facts.content_words(m.text) if w not in kinds] for m in memories}
    vectors_of = _vectors_of(sorted({w for ws in words.values() for w in ws} | set(described)))
    asked = np.stack([vectors_of[d] for d in described])
    return {
        memory_id
        for memory_id, ws in words.items()
        if ws and float((np.stack([vectors_of[w] for w in ws]) @ asked.T).max()) >= OF_THE_KIND
    }
