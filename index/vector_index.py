"""The first-stage vector index interface; FAISS (index/faiss_index.py) and Qdrant
(index/qdrant_index.py) are its backends."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HNSW_EF_SEARCH = 128
"""The ``efSearch`` (Qdrant: ``hnsw_ef``) an HNSW index searches with unless set otherwise
(FAISS's own default, 16, finds 82 % of SciFact's exact top 100 with HNSW32); a search
explores at least ``2 k`` whatever it is (see :func:`hnsw_ef`)."""


def hnsw_ef(configured: int, k: int) -> int:
    """The ``efSearch`` of one HNSW search for the top ``k``: the configured one, at least
    ``2 k`` (the candidate list must hold more than the k asked for: with HNSW32 over
    SciFact, 200 finds 99.9 % of the exact top 100).

    >>> hnsw_ef(128, 10), hnsw_ef(128, 100)
    (128, 200)
    """
    return max(configured, 2 * k)


@dataclass(frozen=True)
class ApproximateSearch:
    """How far an approximate index searches, where not as its file says: IVF lists visited
    (``nprobe``) and HNSW's candidate list (``ef_search``, at least ``2 k`` in any case).
    None leaves the index's own value."""

    nprobe: int | None = None
    ef_search: int | None = None

    def __post_init__(self) -> None:
        for name, value in (("nprobe", self.nprobe), ("ef_search", self.ef_search)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, not {value}")

    def apply(self, index: VectorIndex) -> None:
        if self.nprobe is not None or self.ef_search is not None:
            index.set_search_params(nprobe=self.nprobe, ef_search=self.ef_search)


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
