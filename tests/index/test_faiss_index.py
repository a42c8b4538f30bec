from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.faiss_index import FaissIndex
from index.records import Document
from tests.index.vectors import filled_index, unit_vectors


@pytest.mark.parametrize("factory", ["Flat", "HNSW16", "IVF4,Flat"])
def test_search_finds_exact_neighbours(factory: str) -> None:
    index, keys, vectors = filled_index(factory, 300)
    scores, found = index.search(vectors[:5], 3)
    assert found[:, 0].tolist() == keys[:5].tolist()
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


def test_remove_save_and_load(tmp_path: Path) -> None:
    vectors = unit_vectors(10, 8)
    index = FaissIndex.create(8, "Flat", use_gpu=False)
    index.add(np.arange(10), vectors)
    index.remove(np.array([0, 1]))
    assert len(index) == 8
    index.save(tmp_path / "v.faiss")
    loaded = FaissIndex.load(tmp_path / "v.faiss", use_gpu=False)
    _, keys = loaded.search(vectors[:1], 1)
    assert keys[0, 0] != 0


def test_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="factory"):
        FaissIndex.create(8, "NotAnIndex")
    index = FaissIndex.create(8, "IVF64,Flat", use_gpu=False)
    with pytest.raises(ValueError, match="at least 64"):
        index.train(unit_vectors(10, 8))
    flat = FaissIndex.create(8, "Flat", use_gpu=False)
    with pytest.raises(ValueError, match="shape"):
        flat.add(np.arange(2), unit_vectors(2, 4))
    _, keys = flat.search(unit_vectors(1, 8), 3)
    assert keys.tolist() == [[-1, -1, -1]]


def recall_at_100(index: FaissIndex, queries: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of each query's exact top 100 keys ``exact (q, 100)`` the index finds."""
    _, found = index.search(queries, 100)
    pairs = zip(exact, found, strict=True)
    return float(np.mean([len(set(want) & set(got)) / 100 for want, got in pairs]))


def test_approximate_indexes_search_deep_enough_for_a_re_ranker(tmp_path: Path) -> None:
    """FAISS's defaults (efSearch 16, nprobe 1) find a fraction of the top 100 a re-ranker
    reads; Loupe's find nearly all of it, and a value set on purpose is kept."""
    queries = unit_vectors(50, 16, seed=9)
    for factory in ("HNSW32", "IVF64,Flat"):
        index, keys, vectors = filled_index(factory, 4000)
        index.set_search_params(nprobe=1, ef_search=16)  # as FAISS creates them
        index.save(tmp_path / "old.faiss")
        loaded = FaissIndex.load(tmp_path / "old.faiss")
        assert loaded.search_params() in ({"ef_search": 128}, {"nprobe": 32})
        exact = keys[np.argsort(-(queries @ vectors.T), axis=1)[:, :100]]
        assert recall_at_100(loaded, queries, exact) > 0.95, factory
        if factory.startswith("HNSW"):  # a search explores at least 2 k, whatever efSearch is
            loaded.set_search_params(ef_search=20)
            assert recall_at_100(loaded, queries, exact) > 0.95
        loaded.set_search_params(nprobe=7, ef_search=300)
        loaded.save(tmp_path / "tuned.faiss")
        assert FaissIndex.load(tmp_path / "tuned.faiss").search_params() in (
            {"ef_search": 300},
            {"nprobe": 7},
        )


def test_openers_apply_an_approximate_search_override(tmp_path: Path) -> None:
    from index.live import LiveIndex
    from index.searcher import IndexReader
    from index.vector_index import ApproximateSearch

    live = LiveIndex.open_or_create(tmp_path / "h", model="m", dimension=8, factory="HNSW8")
    live.add([Document(str(i), "t") for i in range(20)], unit_vectors(20, 8))
    live.snapshot()
    assert live.reader.vectors.search_params() == {"ef_search": 128}  # type: ignore[attr-defined]
    live.close()
    override = ApproximateSearch(ef_search=300, nprobe=5)  # nprobe: no IVF here, ignored
    reader = IndexReader.open(tmp_path / "h", read_only=True, approximate=override)
    assert reader.vectors.search_params() == {"ef_search": 300}  # type: ignore[attr-defined]
    reader.close()
    with pytest.raises(ValueError, match="ef_search must be at least 1"):
        ApproximateSearch(ef_search=0)
