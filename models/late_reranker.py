"""The late-interaction model behind the :class:`~models.reranker.Reranker` interface."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from models.array_cache import ArrayCache, document_key
from models.calibration import ScoreCalibration
from models.encoder import TextEncoder, TokenBatch
from models.late_interaction import LateInteractionModel
from models.reranker import regroup
from models.scoring import window_tokens_read

StoredMatrices = Callable[[list[str], str], list[np.ndarray | None]]
"""``(texts, fingerprint)``: by position, the ``(tokens, dim')`` matrix an index stored for a
document with exactly that text, computed by the model with that fingerprint (None where it
holds none)."""


class LateInteractionReranker:
    """Scores texts (encoding them) or stored token matrices (encoding only the query)."""

    def __init__(
        self,
        model: LateInteractionModel,
        name: str = "lite",
        batch_size: int = 32,
        cache: ArrayCache | None = None,
        calibration: ScoreCalibration | None = None,
    ):
        self.model = model.eval()
        self._name = name
        self.batch_size = batch_size
        self.cache = cache
        """Token matrices of documents seen before (needs a fingerprinted model)."""
        self.calibration = calibration
        """Maps scores to probabilities of relevance (``calibration.json`` of the folder)."""

    @property
    def name(self) -> str:
        return self._name

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    def relevance_scores(self, query: str, scores: np.ndarray) -> np.ndarray | None:
        """Probabilities of relevance from the calibration, given the query's token count."""
        if self.calibration is None:
            return None
        tokens = self.model.query_token_counts([query])[0]
        return self.calibration.probabilities(scores, query_tokens=tokens)

    @torch.inference_mode()
    def query_matrices(self, queries: Sequence[str]) -> list[torch.Tensor]:
        encoded = self.model.encode_queries(list(queries))
        return [encoded.tokens[i, : int(encoded.mask[i].sum())] for i in range(len(queries))]

    @torch.inference_mode()
    def query_matrices_from_states(
        self, encoder: TextEncoder, states: TokenBatch
    ) -> list[torch.Tensor | None]:
        """Projected query matrices ``(q_tokens_i, dim)`` from backbone states another
        component already computed with ``encoder`` (the first stage's pass over the
        queries), so a query is not run through the transformer twice.

        Only exact reuse: when this re-ranker runs on that very encoder and the query has
        at most ``q_len`` tokens (a longer query is truncated differently, so its entry is
        None and :meth:`score_stored_many` encodes it).
        """
        if self.model.encoder is not encoder:
            return [None] * len(states.mask)
        projected = self.model.project(states.embeddings, states.mask)  # (n, tokens, dim)
        lengths = states.mask.sum(dim=1).tolist()
        return [
            projected[i, :n] if n <= self.model.config.q_len else None
            for i, n in enumerate(lengths)
        ]

    def _complete_query_tokens(
        self, queries: Sequence[str], given: Sequence[torch.Tensor | None] | None
    ) -> list[torch.Tensor]:
        """``given`` with its missing entries encoded (all of them when None)."""
        if given is None:
            return self.query_matrices(queries)
        if len(given) != len(queries):
            raise ValueError("one query matrix (or None) per query is required")
        missing = [i for i, m in enumerate(given) if m is None]
        fresh = (
            dict(zip(missing, self.query_matrices([queries[i] for i in missing]), strict=True))
            if missing
            else {}
        )
        return [m if m is not None else fresh[i] for i, m in enumerate(given)]

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        return self.score_many([query], [documents])[0]

    def score_many(
        self, queries: Sequence[str], documents: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        return self.score_many_counted(queries, documents)[0]

    def score_many_counted(
        self,
        queries: Sequence[str],
        documents: Sequence[Sequence[str]],
        query_tokens: Sequence[torch.Tensor | None] | None = None,
        stored: StoredMatrices | None = None,
    ) -> tuple[list[np.ndarray], list[int]]:
        """:meth:`score_many`, and how many tokens of each query's documents were read (special
        tokens counted once a document, as ``count_tokens`` at ``max_document_tokens``
        counts them), from the documents' matrices: no second pass of the tokenizer.
        ``query_tokens``: query matrices ``(q_tokens, dim')`` already at hand (None where
        not), as :meth:`score_stored_many` takes them. ``stored``: see
        :meth:`document_matrices`."""
        if len(queries) != len(documents):
            raise ValueError("one document list per query is required")
        flat = [text for docs in documents for text in docs]
        grouped = regroup(self.document_matrices(flat, stored), [len(d) for d in documents])
        config = self.model.config
        tokens = [
            sum(
                window_tokens_read(int(m.shape[0]), config.d_len, config.window_overlap or 0)
                for m in matrices
            )
            for matrices in grouped
        ]
        return self.score_stored_many(queries, grouped, query_tokens), tokens

    def document_matrices(
        self, texts: Sequence[str], stored: StoredMatrices | None = None
    ) -> list[np.ndarray]:
        """Token matrices of the texts: from the document cache where it has them, else from
        ``stored`` (an index's matrices of documents with exactly these texts, computed by
        this model; the service's engine gives its index's), else encoded. What was not
        cached is kept there."""
        fingerprint = self.model.fingerprint
        if fingerprint is None:
            return self.model.document_matrices(texts, self.batch_size) if texts else []
        keys = [document_key(fingerprint, text) for text in texts]
        found: list[np.ndarray | None] = [
            self.cache.get(key) if self.cache is not None else None for key in keys
        ]
        uncached = [i for i, m in enumerate(found) if m is None]
        if uncached and stored is not None:
            held = stored([texts[i] for i in uncached], fingerprint)
            for i, matrix in zip(uncached, held, strict=True):
                found[i] = matrix
        missing = [i for i in uncached if found[i] is None]
        if missing:
            fresh = self.model.document_matrices([texts[i] for i in missing], self.batch_size)
            for i, matrix in zip(missing, fresh, strict=True):
                found[i] = matrix
        if self.cache is not None:
            for i in uncached:
                matrix = found[i]
                assert matrix is not None
                self.cache.put(keys[i], matrix)
        return [m for m in found if m is not None]

    def score_stored(self, query: str, matrices: Sequence[np.ndarray]) -> np.ndarray:
        """Score stored ``(tokens_i, dim)`` document matrices without running the backbone
        over the documents."""
        return self.score_stored_many([query], [matrices])[0]

    @torch.inference_mode()
    def score_stored_many(
        self,
        queries: Sequence[str],
        matrices: Sequence[Sequence[np.ndarray]],
        query_tokens: Sequence[torch.Tensor | None] | None = None,
    ) -> list[np.ndarray]:
        """Scores of each query's stored document matrices; ``query_tokens`` may hold the
        queries' projected matrices already (see :meth:`query_matrices_from_states`), None
        where a query must be encoded."""
        query_tokens = self._complete_query_tokens(queries, query_tokens)
        device = self.model.device
        scores: list[np.ndarray] = []
        for q, docs in zip(query_tokens, matrices, strict=True):
            if len(docs) == 0:
                scores.append(np.zeros(0, dtype=np.float32))
                continue
            out = self.model.score_matrices(q.to(device), docs)
            scores.append(out.float().cpu().numpy())
        return scores
