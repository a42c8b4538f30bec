"""The late-interaction model behind the :class:`~models.reranker.Reranker` interface."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from models.late_interaction import LateInteractionModel, pad_matrices
from models.reranker import regroup


class LateInteractionReranker:
    """Scores texts (encoding them) or stored token matrices (encoding only the query)."""

    def __init__(self, model: LateInteractionModel, name: str = "lite", batch_size: int = 32):
        self.model = model.eval()
        self._name = name
        self.batch_size = batch_size

    @property
    def name(self) -> str:
        return self._name

    @torch.inference_mode()
    def query_matrices(self, queries: Sequence[str]) -> list[torch.Tensor]:
        encoded = self.model.encode_queries(list(queries))
        return [encoded.tokens[i, : int(encoded.mask[i].sum())] for i in range(len(queries))]

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        return self.score_many([query], [documents])[0]

    def score_many(
        self, queries: Sequence[str], documents: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        if len(queries) != len(documents):
            raise ValueError("one document list per query is required")
        flat = [text for docs in documents for text in docs]
        matrices = self.model.document_matrices(flat, self.batch_size) if flat else []
        return self.score_stored_many(queries, regroup(matrices, [len(d) for d in documents]))

    def score_stored(self, query: str, matrices: Sequence[np.ndarray]) -> np.ndarray:
        """Score stored ``(tokens_i, dim)`` document matrices without running the backbone
        over the documents."""
        return self.score_stored_many([query], [matrices])[0]

    @torch.inference_mode()
    def score_stored_many(
        self, queries: Sequence[str], matrices: Sequence[Sequence[np.ndarray]]
    ) -> list[np.ndarray]:
        query_tokens = self.query_matrices(queries)
        device = self.model.device
        scores: list[np.ndarray] = []
        for q, docs in zip(query_tokens, matrices, strict=True):
            if len(docs) == 0:
                scores.append(np.zeros(0, dtype=np.float32))
                continue
            d_tokens, d_mask = pad_matrices(docs, device)
            q_mask = torch.ones(1, q.shape[0], dtype=torch.bool, device=device)
            out = self.model(q[None], q_mask, d_tokens[None], d_mask[None])[0]
            scores.append(out.float().cpu().numpy())
        return scores
