"""Exact inner-product top-k over a small set of vectors (a filtered search's candidates)."""

from __future__ import annotations

import numpy as np

from index.vector_index import no_hits


def top_k_inner_product(
    queries: np.ndarray, keys: np.ndarray, vectors: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k ``(scores, keys)``, each ``(q, k)`` best first, of ``queries (q, dim)`` against
    ``vectors (n, dim)`` labelled by ``keys (n,)``; padded with -inf and -1 where n < k, as
    FAISS pads.

    >>> s, k = top_k_inner_product(np.array([[1.0, 0.0]]), np.array([7, 9]),
    ...                            np.array([[0.5, 0.0], [2.0, 0.0]]), 3)
    >>> s.tolist(), k.tolist()
    ([[2.0, 0.5, -inf]], [[9, 7, -1]])
    """
    scores, labels = no_hits(len(queries), k)
    if len(keys) == 0:
        return scores, labels
    sims = np.asarray(queries, dtype=np.float32) @ np.asarray(vectors, dtype=np.float32).T
    take = min(k, len(keys))
    top = np.argpartition(-sims, take - 1, axis=1)[:, :take]
    top_scores = np.take_along_axis(sims, top, axis=1)
    order = np.argsort(-top_scores, axis=1, kind="stable")
    best = np.take_along_axis(top, order, axis=1)
    scores[:, :take] = np.take_along_axis(sims, best, axis=1)
    labels[:, :take] = np.asarray(keys, dtype=np.int64)[best]
    return scores, labels
