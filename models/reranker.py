"""The re-ranker interface, and the dual encoder's cosine as the simplest re-ranker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np

from models.calibration import ScoreCalibration
from models.encoder import TextEncoder

T = TypeVar("T")


@runtime_checkable
class Reranker(Protocol):
    """Scores documents for a query; higher is more relevant."""

    @property
    def name(self) -> str: ...

    calibration: ScoreCalibration | None
    """Platt scaling of ``score``'s values to probabilities of relevance, where fitted."""

    @property
    def calibrated(self) -> bool:
        """Whether :meth:`relevance_scores` gives probabilities of relevance (not None)."""
        ...

    def relevance_scores(self, query: str, scores: np.ndarray) -> np.ndarray | None:
        """``(n,)`` scores of the query's documents as probabilities of relevance, or None
        without a calibration."""
        ...

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        """Relevance of each document to the query: ``(len(documents),)`` float32."""
        ...

    def score_many(
        self, queries: Sequence[str], documents: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        """``score`` for several requests at once, sharing forward passes (micro-batching)."""
        ...


class DualEncoderReranker:
    """Re-ranks by the inner product of normalised sentence vectors (cosine)."""

    def __init__(self, encoder: TextEncoder, calibration: ScoreCalibration | None = None):
        self.encoder = encoder
        self.calibration = calibration

    @property
    def name(self) -> str:
        return f"dual-encoder:{self.encoder.model_name}"

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    def relevance_scores(self, query: str, scores: np.ndarray) -> np.ndarray | None:
        """A cosine is one number per pair, whatever the query's length."""
        return self.calibration.probabilities(scores) if self.calibration is not None else None

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        return self.score_many([query], [documents])[0]

    def score_many(
        self, queries: Sequence[str], documents: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        if len(queries) != len(documents):
            raise ValueError("one document list per query is required")
        query_vectors = self.encoder.encode(list(queries))
        flat = [text for docs in documents for text in docs]
        blocks = regroup(list(self.encoder.encode(flat)), [len(docs) for docs in documents])
        return [
            np.array([float(v @ query_vector) for v in block], dtype=np.float32)
            for query_vector, block in zip(query_vectors, blocks, strict=True)
        ]


def regroup(flat: Sequence[T], sizes: Sequence[int]) -> list[list[T]]:
    """Cut a flat list back into consecutive groups of the given sizes.

    >>> regroup([1, 2, 3, 4, 5], [2, 0, 3])
    [[1, 2], [], [3, 4, 5]]
    """
    groups, start = [], 0
    for size in sizes:
        groups.append(list(flat[start : start + size]))
        start += size
    return groups
