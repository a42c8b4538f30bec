"""Filtered first-stage search: the filter's rule, in SQL and in Python, and every path
through the index (flat, approximate with a selector, exact over stored vectors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import index.searcher as searcher
from index.docstore import DocStore
from index.exact_search import top_k_inner_product
from index.faiss_index import FaissIndex
from index.live import LiveIndex
from index.metadata_filter import MetadataFilter, parse_filter_pairs
from index.records import Document
from tests.index.vectors import filled_index, unit_vectors

METADATA: list[dict[str, Any]] = [
    {"topic": "food", "year": 2024, "new": True},
    {"topic": "food", "year": 2023.0, "new": False},
    {"topic": "health", "year": "2024", "new": 1},
    {"topic": ["food"], "year": 2022},
    {"topic": "Food", "nested": {"topic": "food"}},
    {},
    {"year": 2025.5, "date": "2024-06-01"},
    {"year": True, "date": "2025-01-01"},
    {"date": "2023-12-31T23:59"},
]
FILTERS: list[dict[str, Any]] = [
    {"topic": "food"},
    {"topic": ["food", "health"]},
    {"year": 2024},
    {"year": [2023, 2022]},
    {"year": "2024"},
    {"new": True},
    {"new": 1},
    {"new": False},
    {"topic": "food", "year": 2024},
    {"nested": "food"},
    {"missing": "x"},
    {"year": {"gte": 2023}},
    {"year": {"gt": 2023, "lt": 2025}},
    {"year": {"lte": 2023.5}},
    {"year": {"gte": "2024"}},
    {"date": {"gte": "2024-01-01", "lt": "2025"}},
    {"date": {"lt": "2024"}},
    {"topic": "food", "year": {"gt": 2023}},
    {"missing": {"gt": 0}},
]


@pytest.mark.parametrize("given", FILTERS)
def test_the_docstore_and_python_apply_the_same_rule(tmp_path: Path, given: dict) -> None:
    store = DocStore(tmp_path / "d.sqlite")
    docs = [Document(str(i), "t", metadata=m) for i, m in enumerate(METADATA)]
    keys, _ = store.upsert(docs)
    where = MetadataFilter.from_mapping(given)
    expected = [k for k, m in zip(keys, METADATA, strict=True) if where.matches(m)]
    assert store.keys_matching(where).tolist() == expected


def test_json_types_are_not_mixed() -> None:
    def passing(given: dict[str, Any]) -> list[int]:
        where = MetadataFilter.from_mapping(given)
        return [i for i, m in enumerate(METADATA) if where.matches(m)]

    assert passing({"topic": "food"}) == [0, 1]  # not a list holding it, not "Food"
    assert passing({"year": 2024}) == [0]  # not the string "2024"
    assert passing({"year": 2023}) == [1]  # 2023 == 2023.0
    assert passing({"new": True}) == [0] and passing({"new": 1}) == [2]
    # ranges: numbers against numbers only (not "2024", not true), strings by characters
    assert passing({"year": {"gte": 2023}}) == [0, 1, 6]
    assert passing({"year": {"gt": 2023, "lt": 2025}}) == [0]
    assert passing({"year": {"gte": "2024"}}) == [2]
    assert passing({"date": {"gte": "2024-01-01", "lt": "2025"}}) == [6]
    assert passing({"date": {"lt": "2024"}}) == [8]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "at least one field"),
        ({"a": []}, "at least one value"),
        ({"a": None}, "not NoneType"),
        ({"a": {"$gt": 1}}, "takes gt, gte, lt or lte, not \\$gt"),
        ({"a": {}}, "takes gt, gte, lt or lte"),
        ({"a": {"gt": 1, "lt": "2"}}, "all numbers or all strings"),
        ({"a": {"gt": True}}, "not bool"),
        ({"a": {"gt": None}}, "not NoneType"),
        ({"a": {"gt": float("inf")}}, "finite"),
        ({"a": [{"gt": 1}]}, "not dict"),
        ({"a": [[1]]}, "not list"),
        ({"a": float("nan")}, "finite"),
        ({"a": 2**70}, "64 bits"),
        ({'a"b': 1}, "without quotes"),
        ({"": 1}, "without quotes"),
    ],
)
def test_a_bad_filter_is_refused_with_a_reason(given: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MetadataFilter.from_mapping(given)


def test_command_line_pairs() -> None:
    where = parse_filter_pairs(["topic=food", "year=2024", "topic=health", "new=true", "s=a=b"])
    assert where.fields == (
        ("topic", ("food", "health")),
        ("year", (2024,)),
        ("new", (True,)),
        ("s", ("a=b",)),
    )
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        parse_filter_pairs(["topic"])
    ranged = parse_filter_pairs(["year>2020", "year<=2024", "date>=2024-01-01", "n<5"])
    assert ranged.as_mapping() == {
        "year": {"gt": 2020, "lte": 2024},
        "date": {"gte": "2024-01-01"},
        "n": {"lt": 5},
    }
    with pytest.raises(ValueError, match="values or a range, not both"):
        parse_filter_pairs(["year=2020", "year>2019"])


def test_exact_top_k_matches_a_flat_index() -> None:
    vectors = unit_vectors(50, 8)
    keys = np.arange(100, 150, dtype=np.int64)
    flat = FaissIndex.create(8, "Flat", use_gpu=False)
    flat.add(keys, vectors)
    scores, found = top_k_inner_product(vectors[:3], keys, vectors, 10)
    want_scores, want = flat.search(vectors[:3], 10)
    assert found.tolist() == want.tolist()
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)


@pytest.mark.parametrize("factory", ["Flat", "HNSW16", "IVF4,Flat"])
def test_search_among_returns_allowed_keys_only(factory: str) -> None:
    index, keys, vectors = filled_index(factory, 400)
    allowed = keys[::2]
    _, found = index.search_among(vectors[:4], 5, allowed)
    assert set(found.ravel().tolist()) <= set(allowed.tolist())
    # an allowed vector finds itself; a disallowed one does not
    assert found[0, 0] == 1000 and found[2, 0] == 1002 and 1001 not in found[1].tolist()
    _, none = index.search_among(vectors[:1], 3, np.zeros(0, dtype=np.int64))
    assert none.tolist() == [[-1, -1, -1]]
    if factory == "Flat":
        _, exact = top_k_inner_product(vectors[:4], allowed, vectors[::2], 5)
        assert found.tolist() == exact.tolist()


@pytest.mark.parametrize("factory", ["Flat", "HNSW8"])
@pytest.mark.parametrize("exact_limit", [0, 1000])
def test_filtered_search_of_a_live_index(
    tmp_path: Path, factory: str, exact_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both ways a filter reaches an approximate index (exact over stored vectors, or a
    selector), and a flat index's, give the passing documents in score order; deleted and
    replaced documents never come back."""
    monkeypatch.setattr(searcher, "EXACT_FILTER_LIMIT", exact_limit)
    live = LiveIndex.open_or_create(tmp_path / "i", model="m", dimension=16, factory=factory)
    vectors = unit_vectors(60, 16)
    topics = ["food" if i % 3 == 0 else "other" for i in range(60)]
    live.add([Document(str(i), "t", metadata={"topic": t}) for i, t in enumerate(topics)], vectors)
    live.delete("3")
    live.add([Document("6", "moved", metadata={"topic": "other"})], vectors[6:7])
    where = MetadataFilter.from_mapping({"topic": "food"})
    hits = live.search_vectors(vectors[[0, 3, 6]], 5, where)
    passing = [i for i, t in enumerate(topics) if t == "food" and i not in (3, 6)]
    for row, query in zip(hits, (0, 3, 6), strict=True):
        ids = [int(h.document.id) for h in row]
        assert set(ids) <= set(passing) and len(ids) == 5
        expected = sorted(passing, key=lambda i: -float(vectors[i] @ vectors[query]))[:5]
        assert ids == expected
    nothing = MetadataFilter.from_mapping({"topic": "sport"})
    assert live.search_vectors(vectors[:1], 5, nothing) == [[]]
    # remembered per filter: true and 1 are different filters, though equal in Python
    live.add(
        [Document("flag", "t", metadata={"v": True}), Document("one", "t", metadata={"v": 1})],
        vectors[:2],
    )
    for value, only_id in ((True, "flag"), (1, "one"), (True, "flag")):
        where = MetadataFilter.from_mapping({"v": value})
        assert [h.document.id for h in live.search_vectors(vectors[:1], 5, where)[0]] == [only_id]
    # a range: the numbers within it, in score order
    years = [Document(f"y{y}", "t", metadata={"year": y}) for y in range(2018, 2026)]
    live.add(years, vectors[:8])
    recent = MetadataFilter.from_mapping({"year": {"gte": 2022, "lt": 2025}})
    found = [h.document.id for h in live.search_vectors(vectors[:1], 10, recent)[0]]
    by_score = sorted((2022, 2023, 2024), key=lambda y: -float(vectors[y - 2018] @ vectors[0]))
    assert found == [f"y{y}" for y in by_score]
    # the keys a filter passed are remembered and follow the writes
    live.add([Document("new", "t", metadata={"topic": "sport"})], vectors[:1])
    assert [h.document.id for h in live.search_vectors(vectors[:1], 5, nothing)[0]] == ["new"]
    live.delete("new")
    assert live.search_vectors(vectors[:1], 5, nothing) == [[]]


@pytest.mark.parametrize("factory", ["Flat", "HNSW8"])
def test_kept_filter_keys_follow_every_write(tmp_path: Path, factory: str) -> None:
    """After adds, replacements that change metadata, deletes (by id, by ids, by filter) and an
    id given twice in one write, every kept filter holds exactly the keys a fresh docstore
    scan finds, and on an approximate index (searched exactly) their stored vectors row for
    row."""
    rng = np.random.default_rng(0)
    live = LiveIndex.open_or_create(tmp_path / "i", model="m", dimension=8, factory=factory)
    filters = [
        MetadataFilter.from_mapping(m)
        for m in (
            {"g": 0},
            {"g": [1, 2]},
            {"g": 1, "on": True},
            {"on": 1},
            {"g": "0"},
            {"g": {"gte": 1}},
            {"g": {"gt": 0, "lt": 2}, "on": False},
        )
    ]

    def metadata() -> dict[str, object]:
        return {"g": int(rng.integers(3)), "on": bool(rng.integers(2))}

    live.add([Document(str(i), "t", metadata=metadata()) for i in range(40)], unit_vectors(40, 8))
    for where in filters:
        live.search_vectors(unit_vectors(1, 8), 3, where)  # keeps its keys
    for step in range(60):
        ids = [str(i) for i in rng.integers(0, 50, size=int(rng.integers(1, 4)))]
        if step == 30:
            live.delete_matching(MetadataFilter.from_mapping({"g": 2, "on": False}))
        elif step % 6 == 0:
            live.delete(ids[0])
        elif step % 6 == 3:
            live.delete_many(ids)
        else:
            documents = [Document(i, "t", metadata=metadata()) for i in ids]
            live.add(documents, unit_vectors(len(documents), 8))
    for where in filters:
        kept = live._passing[where.key]
        assert kept.keys.tolist() == live.docstore.keys_matching(where).tolist()
        if factory == "Flat" or not len(kept.keys):
            assert kept.vectors is None  # the selector path needs none; nor does nothing
        else:
            stored_keys, stored = live.docstore.vectors_for_keys(kept.keys)
            assert kept.vectors is not None and stored_keys.tolist() == kept.keys.tolist()
            np.testing.assert_array_equal(kept.vectors, stored)
    assert len(live._passing) == len(filters)  # none was dropped on the way


def test_the_vector_budget_bounds_what_kept_filters_hold(tmp_path: Path) -> None:
    """Filters searched exactly keep their vectors only within ``filter_vector_bytes`` in
    all: none at 0, and a filter grown past the budget by writes drops its own; results
    are the same either way."""
    vectors = unit_vectors(60, 8)
    wheres = [MetadataFilter.from_mapping({"g": g}) for g in range(3)]
    results = []
    for budget in (0, 20 * 8 * 4, 10**6):  # none, one filter of 20, all
        live = LiveIndex.open_or_create(
            tmp_path / str(budget),
            model="m",
            dimension=8,
            factory="HNSW8",
            filter_vector_bytes=budget,
        )
        live.add([Document(str(i), "t", metadata={"g": i % 3}) for i in range(60)], vectors)
        results.append([live.search_vectors(vectors[:4], 5, where) for where in wheres])
        kept = [live._passing[where.key].vectors is not None for where in wheres]
        assert kept == {0: [False] * 3, 640: [False, False, True], 10**6: [True] * 3}[budget]
        if budget == 640:  # the newest filter (g=2, 20 documents) grows past the budget
            live.add([Document("x", "t", metadata={"g": 2})], vectors[:1])
            assert live._passing[wheres[2].key].vectors is None
    ids = [[[h.document.id for h in row] for rows in run for row in rows] for run in results]
    assert ids[0] == ids[1] == ids[2]
    with pytest.raises(ValueError, match="at least 0"):
        LiveIndex.open(tmp_path / "0", filter_vector_bytes=-1)
