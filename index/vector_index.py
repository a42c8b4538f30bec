"""The first-stage vector index interface; FAISS (index/faiss_index.py) and Qdrant
(index/qdrant_index.py) are its backends."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


class VectorIndex(ABC):
    """Inner-product search over vectors identified by int64 keys (docstore keys)."""

    @property
    @abstractmethod
    def dimension(self) -> int: ...

    @abstractmethod
    def __len__(self) -> int: ...

    keeps_metadata: bool = False
    """Whether :meth:`add` keeps the documents' metadata (to filter on it)."""

    saves_writes: bool = False
    """Whether an add or remove is saved once it returns (a server's collection), rather
    than with the next :meth:`save` (an index in memory)."""

    @abstractmethod
    def add(
        self,
        keys: np.ndarray,
        vectors: np.ndarray,
        metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Add ``vectors (n, dim)`` float32 under ``keys (n,)`` int64, with each document's
        ``metadata`` where the backend :attr:`keeps_metadata` (others ignore it)."""

    @abstractmethod
    def remove(self, keys: np.ndarray) -> None:
        """Remove keys; unknown keys are ignored. A RuntimeError where the index cannot
        remove (HNSW)."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k for ``queries (q, dim)``: ``(scores (q, k), keys (q, k))``, key -1 past the end."""

    @abstractmethod
    def search_among(
        self, queries: np.ndarray, k: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k as :meth:`search`, among the keys ``allowed (n,)`` only."""

    @property
    @abstractmethod
    def exhaustive(self) -> bool:
        """Whether a search scores every vector (exact), filtered or not."""

    @abstractmethod
    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Search-time accuracy knobs of approximate indexes (IVF ``nprobe``, HNSW ``ef``)."""

    @abstractmethod
    def save(self, path: Path) -> None: ...

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release connections or files the index holds."""


def as_float32_rows(vectors: np.ndarray, dimension: int) -> np.ndarray:
    """``vectors`` as a C-contiguous float32 ``(n, dimension)`` array; ValueError otherwise.

    >>> as_float32_rows(np.zeros((2, 3)), 3).dtype
    dtype('float32')
    """
    array = np.ascontiguousarray(vectors, dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != dimension:
        raise ValueError(f"expected vectors of shape (n, {dimension}), got {array.shape}")
    return array


def no_hits(queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, keys)``, each ``(queries, k)``, holding no hit: -inf and key -1, the padding
    of every search past its last hit.

    >>> scores, keys = no_hits(1, 2)
    >>> scores.tolist(), keys.tolist()
    ([[-inf, -inf]], [[-1, -1]])
    """
    return np.full((queries, k), -np.inf, dtype=np.float32), np.full((queries, k), -1, np.int64)
