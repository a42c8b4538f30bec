"""Re-ranking first-stage hits: from the token store when the re-ranker wrote it, otherwise
by encoding the hits' texts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from index.searcher import Hit, IndexReader
from models.late_reranker import LateInteractionReranker
from models.reranker import Reranker


def rerank_hits_many(
    reranker: Reranker,
    reader: IndexReader,
    queries: Sequence[str],
    hits: Sequence[Sequence[Hit]],
) -> list[np.ndarray]:
    """Scores ``(len(hits[i]),)`` for each query's hits, in one batched call."""
    if not isinstance(reranker, LateInteractionReranker):
        return reranker.score_many(queries, [[h.document.full_text for h in row] for row in hits])
    fingerprint = reranker.model.fingerprint
    grouped: list[list[np.ndarray]] = []
    for row in hits:
        stored = reader.token_matrices([h.key for h in row], fingerprint)
        missing = [i for i, m in enumerate(stored) if m is None]
        if missing:
            fresh = reranker.model.document_matrices([row[i].document.full_text for i in missing])
            for i, matrix in zip(missing, fresh, strict=True):
                stored[i] = matrix
        grouped.append([m for m in stored if m is not None])
    return reranker.score_stored_many(queries, grouped)


def stored_fraction(reranker: Reranker, reader: IndexReader, hits: Sequence[Hit]) -> float:
    """Share of the hits whose token matrices come from the store (1.0: no encoding)."""
    if not isinstance(reranker, LateInteractionReranker) or not hits:
        return 0.0
    stored = reader.token_matrices([h.key for h in hits], reranker.model.fingerprint)
    return sum(m is not None for m in stored) / len(hits)
