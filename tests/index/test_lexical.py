"""The docstore's full-text index: current with every write, searched by BM25."""

from __future__ import annotations

import sqlite3
from pathlib import Path

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
