"""Re-ranking first-stage hits: from the token store when the re-ranker wrote it, otherwise
by encoding the hits' texts."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from index.searcher import Hit, IndexReader
from models.late_reranker import LateInteractionReranker
from models.reranker import Reranker


def order_by_score(scores: np.ndarray) -> list[int]:
    """Indices from the highest score to the lowest; ties keep input order.

    >>> order_by_score(np.array([0.1, 0.9, 0.1, 0.5]))
    [1, 3, 0, 2]
    """
    return [int(i) for i in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")]


def token_store_warning(reranker: Reranker, reader: IndexReader) -> str | None:
    """Why the index's token store cannot serve ``reranker`` (another re-ranker wrote it, so
    every candidate would be re-encoded), or None when it can or there is nothing to serve."""
    if not isinstance(reranker, LateInteractionReranker):
        return None
    return reader.manifest.token_store_mismatch(reranker.model.fingerprint)


def rerank_hits_many(
    reranker: Reranker,
    reader: IndexReader,
    queries: Sequence[str],
    hits: Sequence[Sequence[Hit]],
    hit_rates: list[float] | None = None,
    query_tokens: Sequence[torch.Tensor | None] | None = None,
) -> list[np.ndarray]:
    """Scores ``(len(hits[i]),)`` for each query's hits, in one batched call.

    ``query_tokens`` (late interaction only): the queries' projected token matrices where
    already computed (see ``LateInteractionReranker.query_matrices_from_states``).

    Hits the store lacks are encoded together, across all queries (through the re-ranker's
    document cache when it has one). ``hit_rates``, if given, receives each query's share of
    hits served from storage.
    """
    if not isinstance(reranker, LateInteractionReranker):
        if hit_rates is not None:
            hit_rates.extend(0.0 for _ in hits)
        return reranker.score_many(queries, [[h.document.full_text for h in row] for row in hits])
    fingerprint = reranker.model.fingerprint
    grouped = [reader.token_matrices([h.key for h in row], fingerprint) for row in hits]
    missing = [(r, i) for r, row in enumerate(grouped) for i, m in enumerate(row) if m is None]
    if hit_rates is not None:
        hit_rates.extend(
            sum(m is not None for m in row) / len(row) if row else 0.0 for row in grouped
        )
    if missing:
        fresh = reranker.document_matrices([hits[r][i].document.full_text for r, i in missing])
        for (r, i), matrix in zip(missing, fresh, strict=True):
            grouped[r][i] = matrix
    return reranker.score_stored_many(
        queries, [[m for m in row if m is not None] for row in grouped], query_tokens
    )


def stored_fraction(reranker: Reranker, reader: IndexReader, hits: Sequence[Hit]) -> float:
    """Share of the hits whose token matrices come from the store (1.0: no encoding)."""
    if not isinstance(reranker, LateInteractionReranker) or not hits:
        return 0.0
    stored = reader.token_matrices([h.key for h in hits], reranker.model.fingerprint)
    return sum(m is not None for m in stored) / len(hits)
