"""The late-interaction model behind the :class:`~models.reranker.Reranker` interface."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from models.document_cache import DocumentCache, document_key
from models.late_interaction import LateInteractionModel, pad_matrices
from models.reranker import regroup


class LateInteractionReranker:
    """Scores texts (encoding them) or stored token matrices (encoding only the query)."""

    def __init__(
        self,
        model: LateInteractionModel,
        name: str = "lite",
        batch_size: int = 32,
        cache: DocumentCache | None = None,
    ):
        self.model = model.eval()
        self._name = name
        self.batch_size = batch_size
        self.cache = cache
        """Token matrices of documents seen before (needs a fingerprinted model)."""

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
        matrices = self.document_matrices(flat)
        return self.score_stored_many(queries, regroup(matrices, [len(d) for d in documents]))

    def document_matrices(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token matrices of the texts, from the document cache where it has them."""
        fingerprint = self.model.fingerprint
        if self.cache is None or fingerprint is None:
            return self.model.document_matrices(texts, self.batch_size) if texts else []
        keys = [document_key(fingerprint, text) for text in texts]
        found: list[np.ndarray | None] = [self.cache.get(key) for key in keys]
        missing = [i for i, m in enumerate(found) if m is None]
        if missing:
            fresh = self.model.document_matrices([texts[i] for i in missing], self.batch_size)
            for i, matrix in zip(missing, fresh, strict=True):
                found[i] = matrix
                self.cache.put(keys[i], matrix)
        return [m for m in found if m is not None]

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
