"""The docstore's full-text index: current with every write, searched by BM25."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from index.docstore import DocStore
from index.lexical import LEXICAL_TABLE
from index.metadata_filter import MetadataFilter
from index.records import Document


def found(store: DocStore, query: str, k: int = 5, where: MetadataFilter | None = None) -> list:
    scores, keys = store.lexical_search([query], k, where)
    by_key = store.get_by_keys(int(x) for x in keys[0] if x >= 0)
    assert list(scores[0]) == sorted(scores[0], reverse=True)
    return [by_key[int(x)].id for x in keys[0] if x >= 0]


def test_the_full_text_index_follows_every_write(tmp_path: Path) -> None:
    store = DocStore(tmp_path / "d.sqlite")
    store.upsert(
        [
            Document("a", "Jewellers use a loupe", title="Tools"),
            Document("b", "A loupe, a loupe: loupes magnify", metadata={"kind": "x"}),
            Document("c", "Bananas are yellow"),
        ]
    )
    assert found(store, "loupes") == ["b", "a"]  # stemmed; b says it three times
    assert found(store, "tools") == ["a"]  # titles are indexed too
    store.upsert([Document("b", "Apples are red")])  # replaced: its old words are gone
    assert found(store, "loupe") == ["a"] and found(store, "apples") == ["b"]
    store.delete("a")
    assert found(store, "loupe") == []
    store.close()
    assert found(DocStore(tmp_path / "d.sqlite", read_only=True), "bananas") == ["c"]


def test_queries_are_words_not_syntax(tmp_path: Path) -> None:
    store = DocStore(tmp_path / "d.sqlite")
    store.upsert([Document("a", "near the gate"), Document("b", "the end")])
    assert found(store, 'NEAR( "gate" OR * -') == ["a"]
    assert found(store, "the of and") == []  # stop words alone match nothing
    assert found(store, "") == []


def test_filters_apply_to_lexical_search(tmp_path: Path) -> None:
    store = DocStore(tmp_path / "d.sqlite")
    store.upsert([Document(str(i), "loupe", metadata={"n": i % 2}) for i in range(6)])
    odd = MetadataFilter.from_mapping({"n": 1})
    assert sorted(found(store, "loupe", 10, odd)) == ["1", "3", "5"]


def test_a_docstore_written_before_the_index_gains_it_on_open(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    DocStore(path).upsert([Document("a", "a loupe"), Document("b", "a lens")])
    with sqlite3.connect(path) as db:  # as docstores were before the full-text index
        for trigger in ("insert", "delete", "update"):
            db.execute(f"DROP TRIGGER {LEXICAL_TABLE}_{trigger}")
        db.execute(f"DROP TABLE {LEXICAL_TABLE}")
    assert not DocStore(path, read_only=True).has_lexical
    store = DocStore(path)
    assert store.has_lexical and found(store, "lens") == ["b"]


def integrity_checked(store: DocStore) -> None:
    """FTS5's own check that the index agrees with the documents table (a trigger that
    deleted other values than it inserted would fail it)."""
    with sqlite3.connect(store.path) as db:
        db.execute(f"INSERT INTO {LEXICAL_TABLE}({LEXICAL_TABLE}) VALUES ('integrity-check')")


def test_doc2query_queries_are_indexed_with_their_document(tmp_path: Path) -> None:
    store = DocStore(tmp_path / "d.sqlite")
    purring = {"doc2query": ["why do felines purr", 7]}  # strings only
    store.upsert([Document("a", "Cats.", metadata=purring), Document("b", "Dogs bark.")])
    assert found(store, "felines") == ["a"]
    store.upsert([Document("a", "Cats.", metadata={"doc2query": ["whiskers"]})])  # replaced
    assert found(store, "felines") == [] and found(store, "whiskers") == ["a"]
    integrity_checked(store)
    store.delete("a")
    assert found(store, "whiskers") == []
    integrity_checked(store)


def docstore_of_old(path: Path, documents: list[Document]) -> Path:
    """A docstore as they were before doc2query queries were indexed: no expansion column,
    a full-text index of title and text."""
    with sqlite3.connect(path) as db:
        db.executescript(
            """CREATE TABLE documents (key INTEGER PRIMARY KEY AUTOINCREMENT,
                doc_id TEXT NOT NULL UNIQUE, title TEXT NOT NULL DEFAULT '', text TEXT NOT NULL,
                metadata TEXT NOT NULL DEFAULT '{}', vector BLOB);
            CREATE VIRTUAL TABLE lexical USING fts5(title, text, content='documents',
                content_rowid='key', tokenize='porter unicode61');
            CREATE TRIGGER lexical_insert AFTER INSERT ON documents BEGIN
                INSERT INTO lexical(rowid, title, text) VALUES (new.key, new.title, new.text);
            END;"""
        )
        db.executemany(
            "INSERT INTO documents (doc_id, title, text, metadata) VALUES (?, ?, ?, ?)",
            [(d.id, d.title, d.text, json.dumps(d.metadata)) for d in documents],
        )
    return path


PLAIN = [
    Document("a", "Cats are small."),
    Document("b", "A loupe magnifies small stones for jewellers.", title="Loupe"),
    Document("c", "Small dogs bark at small cats."),
]


def test_a_docstore_indexed_before_doc2query_queries_is_reindexed_on_open(
    tmp_path: Path,
) -> None:
    """A writable open adds the expansion column from the metadata and re-creates the
    full-text index; where no document has queries, every score stays as it was."""
    plain = docstore_of_old(tmp_path / "plain.sqlite", PLAIN)
    with DocStore(plain, read_only=True) as old:
        before = old.lexical_search(["small jewellers"], 3)
    with DocStore(plain) as store:
        after = store.lexical_search(["small jewellers"], 3)
        np.testing.assert_array_equal(after[1], before[1])
        np.testing.assert_allclose(after[0], before[0], rtol=1e-6)

    expanded = [replace(PLAIN[0], metadata={"doc2query": ["feline size"]}), *PLAIN[1:]]
    path = docstore_of_old(tmp_path / "expanded.sqlite", expanded)
    with DocStore(path, read_only=True) as old:
        assert found(old, "feline") == []
    with DocStore(path) as store:
        assert found(store, "feline") == ["a"]
        store.upsert([Document("c", "Replaced.")])
        integrity_checked(store)


@pytest.mark.parametrize("batch", [10_000, 2], ids=["one batch", "batches of 2"])
def test_a_docstore_written_before_text_hashes_finds_texts_after_a_writable_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    """Read-only, an old docstore finds no text (its documents are simply encoded); its
    first writable open hashes what it stores (a batch at a time), and every later write is
    hashed too."""
    import index.docstore

    monkeypatch.setattr(index.docstore, "HASH_BATCH", batch)
    path = docstore_of_old(tmp_path / "old.sqlite", PLAIN)
    wanted = [PLAIN[1].full_text, PLAIN[1].text, PLAIN[0].text, "never stored"]
    with DocStore(path, read_only=True) as old:
        assert not old.finds_texts and old.keys_for_texts(wanted) == [None] * 4
    with DocStore(path) as store:
        assert store.finds_texts
        keys = store.keys_for_ids(d.id for d in PLAIN)
        assert store.keys_for_texts(wanted) == [keys["b"], None, keys["a"], None]
        every = [d.full_text for d in PLAIN]
        assert store.keys_for_texts(every) == [keys[d.id] for d in PLAIN]
        (new_key,), _ = store.upsert([Document("d", "Written after.", title="New")])
        assert store.keys_for_texts(["New Written after.", "Written after."]) == [new_key, None]
        store.delete("a")
        assert store.keys_for_texts([PLAIN[0].text]) == [None]
