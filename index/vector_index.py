"""The first-stage vector index interface; FAISS is one backend (Qdrant could be another)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np


class VectorIndex(ABC):
    """Inner-product search over vectors identified by int64 keys (docstore keys)."""

    @property
    @abstractmethod
    def dimension(self) -> int: ...

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``vectors (n, dim)`` float32 under ``keys (n,)`` int64."""

    @abstractmethod
    def remove(self, keys: np.ndarray) -> None:
        """Remove keys; unknown keys are ignored."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k for ``queries (q, dim)``: ``(scores (q, k), keys (q, k))``, key -1 past the end."""

    @abstractmethod
    def save(self, path: Path) -> None: ...
