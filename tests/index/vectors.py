"""Random unit vectors for index tests."""

from __future__ import annotations

import numpy as np

from index.faiss_index import FaissIndex


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``(n, dim)`` float32 rows of unit length, seeded."""
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def filled_index(factory: str, n: int, dim: int = 16) -> tuple[FaissIndex, np.ndarray, np.ndarray]:
    """A FAISS index of ``factory`` holding ``n`` unit vectors under keys 1000, 1001, ...,
    searched with nprobe 4 and efSearch 64; returns ``(index, keys, vectors)``."""
    vectors = unit_vectors(n, dim)
    keys = np.arange(1000, 1000 + n, dtype=np.int64)
    index = FaissIndex.create(dim, factory, use_gpu=False)
    index.train(vectors)
    index.add(keys, vectors)
    index.set_search_params(nprobe=4, ef_search=64)
    return index, keys, vectors
