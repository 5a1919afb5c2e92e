"""The words of a full-text search, as the SQLite FTS5 indexes of memories (snippets_fts)
and messages (messages_fts) store them: common words dropped, the rest stemmed."""

from __future__ import annotations

import re

import sqlite_utils

# Must match the tokenizer of snippets_fts and messages_fts (migrations m002, m008).
TOKENIZER = "porter unicode61 remove_diacritics 2"

# Words too common to say anything about what a message is about; BM25 would rank them low
# anyway, but matching them makes the query scan most of the index.
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself just
    me more most my myself no nor not now of off on once only or other our ours ourselves out over own
    same she should so some such than that the their theirs them themselves then there these they
    this those through to too under until up very was we were what when where which while who whom
    why will with would you your yours yourself yourselves""".split()
)


def keywords(query: str) -> list[str]:
    words = re.findall(r"\w+", query.lower())
    return list(dict.fromkeys(w for w in words if w not in STOPWORDS and len(w) > 1))


def stemmed_terms(db: sqlite_utils.Database, query: str) -> list[str]:
    """The query's terms as the full-text index stores them (stemmed), stopwords dropped."""
    return list(terms_and_words(db, query))


def terms_and_words(db: sqlite_utils.Database, query: str) -> dict[str, str]:
    """Each of the query's stemmed terms, and what to put in a MATCH to find it. A MATCH is
    stemmed again, and Porter's stemmer does not always give a stem back unchanged
    ("lighthouse" -> "lighthous" -> "lighthou"), so that is the word the term came from."""
    words = keywords(query)
    if not words:
        return {}
    # FTS5's own tokenizer, run on a temp table (one row a word) in this connection's private schema.
    db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.query_text USING fts5(text, tokenize='{TOKENIZER}')")
    db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.query_terms USING fts5vocab(temp, query_text, 'instance')")
    db.execute("DELETE FROM temp.query_text")
    db.conn.executemany("INSERT INTO temp.query_text (rowid, text) VALUES (?, ?)", list(enumerate(words, start=1)))
    tokens: dict[int, list[str]] = {}
    for term, doc in db.execute("SELECT term, doc FROM temp.query_terms ORDER BY doc, offset"):
        tokens.setdefault(doc, []).append(term)
    db.execute("DELETE FROM temp.query_text")
    found: dict[str, str] = {}
    for doc, terms in sorted(tokens.items()):
        for term in terms:  # a word of one token is matched as typed; the parts of "foo_bar" as stems
            found.setdefault(term, words[doc - 1] if len(terms) == 1 else term)
    return found
