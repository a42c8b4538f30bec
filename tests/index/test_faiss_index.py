from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.faiss_index import FaissIndex
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
