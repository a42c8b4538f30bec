from __future__ import annotations

from pathlib import Path

import numpy as np

from index.docstore import DocStore
from index.metadata_filter import MetadataFilter
from index.records import Document


def test_upsert_replace_delete_and_persist(tmp_path: Path) -> None:
    path = tmp_path / "docs.sqlite"
    vectors = np.arange(6, dtype=np.float32).reshape(3, 2)
    with DocStore(path) as store:
        keys, replaced = store.upsert(
            [Document("a", "alpha"), Document("b", "beta", "B", {"x": 1}), Document("c", "c")],
            vectors,
        )
        assert keys == [1, 2, 3] and replaced == []
        new_keys, replaced = store.upsert([Document("a", "alpha 2")], vectors[:1])
        assert replaced == [1] and new_keys == [4]
        assert store.delete("c") == 3
        assert store.delete("c") is None
    with DocStore(path) as store:
        assert len(store) == 2
        stored = store.get("a")
        assert stored is not None and stored.document.text == "alpha 2"
        assert store.get_by_keys([2, 3, 99]) == {2: Document("b", "beta", "B", {"x": 1})}
        assert store.keys_for_ids(["a", "b", "zz"]) == {"a": 4, "b": 2}
        chunks = list(store.iter_vectors(after_key=2))
        assert chunks[0][0].tolist() == [4]
        np.testing.assert_array_equal(chunks[0][1], vectors[:1])
        assert store.max_key() == 4


def test_keys_are_never_reused(tmp_path: Path) -> None:
    with DocStore(tmp_path / "d.sqlite") as store:
        store.upsert([Document("a", "x")])
        store.delete("a")
        keys, _ = store.upsert([Document("b", "y")])
        assert keys == [2]


def test_lookups_of_more_keys_than_one_sql_statement_binds(tmp_path: Path) -> None:
    """Key and id lookups are asked 900 values at a time; 2,000 must all come back."""
    store = DocStore(tmp_path / "d.sqlite")
    n = 2000
    vectors = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    keys, _ = store.upsert([Document(str(i), f"text {i}") for i in range(n)], vectors)
    store.upsert(
        [Document(str(i), "t") for i in range(2)],
        vectors[:2],
        tokens=[np.ones((3, 2), np.float16)] * 2,
        tokens_fingerprint="f",
    )
    assert sorted(d.id for d in store.get_by_keys(keys).values()) == sorted(
        str(i) for i in range(2, n)
    )
    assert store.keys_for_ids(str(i) for i in range(n))["1999"] == keys[-1]
    found, stored = store.vectors_for_keys(keys)
    assert found.tolist() == keys[2:] and stored[-1].tolist() == vectors[-1].tolist()
    new_keys = store.keys_for_ids(["0", "1"])
    assert sorted(store.get_tokens([*keys, *new_keys.values()], "f")) == sorted(new_keys.values())


def test_delete_many_and_delete_matching_take_text_tokens_and_full_text(tmp_path: Path) -> None:
    """Both bulk deletes remove the documents, their token matrices and their full-text
    entries, and report what they removed."""
    tenants = ["acme", "acme", "zeta", "acme", "zeta"]
    docs = [Document(str(i), f"word{i} shared", metadata={"t": t}) for i, t in enumerate(tenants)]
    tokens = [np.ones((2, 4), dtype=np.float32)] * len(docs)
    with DocStore(tmp_path / "d.sqlite") as store:
        keys, _ = store.upsert(docs, tokens=tokens, tokens_fingerprint="f")
        assert store.delete_many(["1", "9", "1"]) == {"1": keys[1]}
        gone = store.delete_matching(MetadataFilter.from_mapping({"t": "acme"}))
        assert gone.tolist() == [keys[0], keys[3]]
        assert sorted(store.keys_for_ids([d.id for d in docs]).values()) == [keys[2], keys[4]]
        assert set(store.get_tokens(keys, "f")) == {keys[2], keys[4]}
        _, found = store.lexical_search(["shared"], 5)
        assert sorted(k for k in found[0].tolist() if k >= 0) == [keys[2], keys[4]]


def test_the_kept_count_follows_every_write_and_a_failed_one(tmp_path: Path) -> None:
    """The writer keeps its document count instead of counting the table on every ask; it
    agrees with a fresh count after adds, replacements (one id twice in a write too), deletes
    by id and by filter, and a write that fails part-way and rolls back."""
    import sqlite3

    import pytest

    path = tmp_path / "docs.sqlite"

    def counted() -> int:
        with sqlite3.connect(path) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0])

    def doc(i: int, topic: str = "a") -> Document:
        return Document(id=f"d{i}", text=f"text {i}", metadata={"topic": topic})

    with DocStore(path) as store:
        assert len(store) == 0
        store.upsert([doc(i) for i in range(5)])
        assert len(store) == counted() == 5
        store.upsert([doc(1), doc(7), doc(7, "b"), doc(8, "b")])  # 1 replaced; 7 given twice
        assert len(store) == counted() == 7
        store.delete_many(["d0", "missing", "d0"])
        assert len(store) == counted() == 6
        store.delete_matching(MetadataFilter.from_mapping({"topic": "b"}))
        assert len(store) == counted() == 4
        bad = [np.ones((2, 4), dtype=np.float32), np.ones(4, dtype=np.float32)]  # 2nd not 2-D
        with pytest.raises(IndexError):
            store.upsert([doc(20), doc(21)], tokens=bad, tokens_fingerprint="f")
        assert len(store) == counted() == 4  # rolled back, and counted again
        store.upsert([doc(30)])
        assert len(store) == counted() == 5


def test_the_keys_of_deleted_and_replaced_documents_are_kept_until_forgotten(
    tmp_path: Path,
) -> None:
    path = tmp_path / "docs.sqlite"
    with DocStore(path) as store:
        keys, _ = store.upsert(
            [Document(str(i), "t", metadata={"i": i}) for i in range(5)], np.eye(5)
        )
        _, replaced = store.upsert([Document("0", "new")], np.eye(5)[:1])
        store.delete_many(["1", "missing"])
        store.delete_matching(MetadataFilter.from_mapping({"i": 2}))
        assert replaced == [keys[0]]
        assert store.removed_vector_keys().tolist() == keys[:3]
        store.forget_removed_vectors([keys[2]])
        assert store.removed_vector_keys().tolist() == keys[:2]
        store.forget_removed_vectors(keep={keys[1]})
    with DocStore(path, read_only=True) as store:
        assert store.removed_vector_keys().tolist() == [keys[1]]
    with DocStore(path) as store:
        store.forget_removed_vectors()
        assert store.removed_vector_keys().tolist() == []
