"""The docstore's full-text index: SQLite FTS5 over each document's title, text and doc2query
queries (``expansion``), kept in step with every write by triggers, ranked by FTS5's BM25
(k1 = 1.2, b = 0.75, Porter stemming; an empty column changes no score, as FTS5 counts a
document's length over all its columns). Unlike the ``--bm25`` index (bm25s, built once
with the index), it is always current, so a live service can search it."""

from __future__ import annotations

import re

from bm25s.stopwords import STOPWORDS_EN

LEXICAL_TABLE = "lexical"

SCHEMA = (
    f"""CREATE VIRTUAL TABLE {LEXICAL_TABLE} USING fts5(
        title, text, expansion, content='documents', content_rowid='key',
        tokenize='porter unicode61'
    )""",
    f"""CREATE TRIGGER {LEXICAL_TABLE}_insert AFTER INSERT ON documents BEGIN
        INSERT INTO {LEXICAL_TABLE}(rowid, title, text, expansion)
        VALUES (new.key, new.title, new.text, new.expansion);
    END""",
    f"""CREATE TRIGGER {LEXICAL_TABLE}_delete AFTER DELETE ON documents BEGIN
        INSERT INTO {LEXICAL_TABLE}({LEXICAL_TABLE}, rowid, title, text, expansion)
        VALUES ('delete', old.key, old.title, old.text, old.expansion);
    END""",
    f"""CREATE TRIGGER {LEXICAL_TABLE}_update AFTER UPDATE OF title, text, expansion
    ON documents BEGIN
        INSERT INTO {LEXICAL_TABLE}({LEXICAL_TABLE}, rowid, title, text, expansion)
        VALUES ('delete', old.key, old.title, old.text, old.expansion);
        INSERT INTO {LEXICAL_TABLE}(rowid, title, text, expansion)
        VALUES (new.key, new.title, new.text, new.expansion);
    END""",
    f"INSERT INTO {LEXICAL_TABLE}({LEXICAL_TABLE}) VALUES ('rebuild')",
)
"""The statements that create the table and the triggers that keep it in step with
``documents``, then index what is stored already."""

DROP = tuple(
    f"DROP {kind} IF EXISTS {name}"
    for kind, name in (
        ("TRIGGER", f"{LEXICAL_TABLE}_insert"),
        ("TRIGGER", f"{LEXICAL_TABLE}_delete"),
        ("TRIGGER", f"{LEXICAL_TABLE}_update"),
        ("TABLE", LEXICAL_TABLE),
    )
)
"""The statements that remove the table and its triggers (to re-create an outdated one)."""

STOPWORDS = frozenset(STOPWORDS_EN)
"""English stop words left out of queries, the list the ``--bm25`` index (bm25s) drops: a
query of them alone would match nearly every document."""

MAX_QUERY_TERMS = 64


def match_expression(text: str) -> str | None:
    """An FTS5 query for any of the text's words (lower-cased, stop words and repeats left
    out, each quoted so that no word is read as an operator); None when no word is left.

    >>> match_expression('What is "NEAR" the OR-gate, or the gate?')
    '"what" OR "near" OR "gate"'
    >>> match_expression("the of and") is None
    True
    """
    words = [w for w in re.findall(r"\w+", text.lower()) if w not in STOPWORDS]
    unique = list(dict.fromkeys(words))[:MAX_QUERY_TERMS]
    if not unique:
        return None
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in unique)
