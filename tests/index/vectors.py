"""Vectors and documents for index tests."""

from __future__ import annotations

import numpy as np

from index.faiss_index import FaissIndex
from index.live import LiveIndex
from index.records import Document


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


def ranked_documents(live: LiveIndex) -> np.ndarray:
    """Add six documents whose inner products with ``e0`` fall from "0" to "5", with
    metadata ``{"n": "even" | "odd"}``; returns
    ``e0`` as a query ``(1, 4)``."""
    scores = np.linspace(1.0, 0.5, 6, dtype=np.float32)
    vectors = np.zeros((6, 4), dtype=np.float32)
    vectors[:, 0], vectors[:, 1] = scores, np.sqrt(1 - scores**2)
    parity = ["even", "odd"]
    live.add(
        [Document(str(i), f"text {i}", metadata={"n": parity[i % 2]}) for i in range(6)], vectors
    )
    return np.eye(4, dtype=np.float32)[:1]
