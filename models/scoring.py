"""Late-interaction scoring maths as pure functions (shapes in each docstring).

Conventions: a query batch is ``(batch, q_tokens, dim)`` with a ``(batch, q_tokens)`` mask; its
candidates are ``(batch, docs, d_tokens, dim)`` with a ``(batch, docs, d_tokens)`` mask; masks
are True (or 1) for real tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def similarity_matrix(queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
    """Token-by-token similarities ``S = Q Dᵀ`` for every query and its candidates.

    Args:
        queries: ``(batch, q_tokens, dim)``.
        documents: ``(batch, docs, d_tokens, dim)``.

    Returns:
        ``(batch, docs, q_tokens, d_tokens)``.

    >>> q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    >>> d = torch.tensor([[[[1.0, 0.0], [0.5, 0.5], [0.0, 0.0]]]])
    >>> similarity_matrix(q, d).tolist()
    [[[[1.0, 0.5, 0.0], [0.0, 0.5, 0.0]]]]
    """
    return torch.einsum("bqe,bnte->bnqt", queries, documents)


def shared_similarity_matrix(queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
    """Every query against every document of one shared pool (in-batch negatives).

    Args:
        queries: ``(batch, q_tokens, dim)``.
        documents: ``(docs, d_tokens, dim)``.

    Returns:
        ``(batch, docs, q_tokens, d_tokens)``, the same as :func:`similarity_matrix` with the
        pool repeated per query, without materialising the repeat.

    >>> q, d = torch.randn(2, 3, 4), torch.randn(5, 6, 4)
    >>> full = similarity_matrix(q, d[None].expand(2, -1, -1, -1))
    >>> bool(torch.allclose(shared_similarity_matrix(q, d), full, atol=1e-6))
    True
    """
    return torch.einsum("bqe,nte->bnqt", queries, documents)


def pair_mask(query_mask: torch.Tensor, doc_mask: torch.Tensor) -> torch.Tensor:
    """Which entries of ``S`` pair two real tokens: ``(batch, docs, q_tokens, d_tokens)`` bool.

    >>> pair_mask(torch.tensor([[1, 0]]), torch.tensor([[[1, 1, 0]]])).int().tolist()
    [[[[1, 1, 0], [0, 0, 0]]]]
    """
    return query_mask.bool()[:, None, :, None] & doc_mask.bool()[:, :, None, :]


def maxsim(sim: torch.Tensor, query_mask: torch.Tensor, doc_mask: torch.Tensor) -> torch.Tensor:
    """ColBERT's MaxSim: for each query token the best document token, summed over the query.

    Args:
        sim: ``(batch, docs, q_tokens, d_tokens)`` similarities.
        query_mask: ``(batch, q_tokens)``.
        doc_mask: ``(batch, docs, d_tokens)``.

    Returns:
        ``(batch, docs)``. Padding never changes a score.

    >>> s = torch.tensor([[[[0.9, 0.1, 5.0], [0.2, 0.4, 5.0]]]])
    >>> maxsim(s, torch.tensor([[1, 1]]), torch.tensor([[[1, 1, 0]]])).tolist()
    [[1.2999999523162842]]
    """
    doc_valid = doc_mask.bool()[:, :, None, :]
    best = sim.masked_fill(~doc_valid, float("-inf")).amax(dim=-1)
    best = best.masked_fill(~doc_valid.any(dim=-1), 0.0)
    return (best * query_mask[:, None, :].to(sim.dtype)).sum(dim=-1)


def top_k_similarities(
    sim: torch.Tensor, doc_mask: torch.Tensor, k: int, fill: float = 0.0
) -> torch.Tensor:
    """Each query token's ``k`` best document-token similarities, sorted, best first.

    Position-free features: they do not depend on where in the document a match lies.
    Missing entries (documents shorter than ``k``) hold ``fill``.

    Args:
        sim: ``(batch, docs, q_tokens, d_tokens)``.
        doc_mask: ``(batch, docs, d_tokens)``.

    Returns:
        ``(batch, docs, q_tokens, k)``.

    >>> s = torch.tensor([[[[0.1, 0.7, 0.3, 9.0]]]])
    >>> top_k_similarities(s, torch.tensor([[[1, 1, 1, 0]]]), k=4).tolist()
    [[[[0.699999988079071, 0.30000001192092896, 0.10000000149011612, 0.0]]]]
    """
    valid = doc_mask.bool()[:, :, None, :].expand_as(sim)
    masked = sim.masked_fill(~valid, float("-inf"))
    if masked.shape[-1] < k:
        pad = masked.new_full((*masked.shape[:-1], k - masked.shape[-1]), float("-inf"))
        masked = torch.cat([masked, pad], dim=-1)
    values = masked.topk(k, dim=-1).values
    return values.masked_fill(torch.isinf(values), fill)


def pad_to_length(
    tokens: torch.Tensor, mask: torch.Tensor, length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncate or zero-pad the token axis (dim -2 of ``tokens``, -1 of ``mask``) to ``length``.

    >>> t, m = pad_to_length(torch.ones(1, 2, 3), torch.ones(1, 2), 4)
    >>> tuple(t.shape), m.tolist()
    ((1, 4, 3), [[1.0, 1.0, 0.0, 0.0]])
    """
    current = tokens.shape[-2]
    if current >= length:
        return tokens[..., :length, :], mask[..., :length]
    pad_tokens = tokens.new_zeros((*tokens.shape[:-2], length - current, tokens.shape[-1]))
    pad_mask = mask.new_zeros((*mask.shape[:-1], length - current))
    return torch.cat([tokens, pad_tokens], dim=-2), torch.cat([mask, pad_mask], dim=-1)


def window_owners(lengths: Sequence[int], window: int) -> list[int]:
    """The document each window belongs to, when documents of ``lengths`` tokens are read as
    consecutive ``window``-token windows (the last may be shorter; an empty document still
    has one).

    >>> window_owners([3, 5, 0], 2)
    [0, 0, 1, 1, 1, 2]
    """
    return [doc for doc, n in enumerate(lengths) for _ in range(max(1, -(-n // window)))]


def window_tokens_read(rows: int, window: int, overlap: int) -> int:
    """Tokens of a document (one pair of special tokens counted) that its stored matrix of
    ``rows`` rows holds, when the matrix is the document's ``window``-row windows end to end
    (every one but the last full), each with its own special tokens and sharing ``overlap``
    text tokens with the one before.

    >>> window_tokens_read(100, 128, 32)  # one window: every row is a token read
    100
    >>> window_tokens_read(128 + 40, 128, 32)  # 126 text tokens, then 38 of which 32 repeat
    134
    """
    windows = max(1, -(-rows // window))
    return rows - (windows - 1) * (2 + overlap)


def best_window_scores(scores: torch.Tensor, owners: torch.Tensor, documents: int) -> torch.Tensor:
    """``(..., windows)`` window scores to ``(..., documents)``: each document's best window
    (MaxP). Gradients reach each document's best window only.

    >>> best_window_scores(torch.tensor([1.0, 3.0, 2.0]), torch.tensor([0, 0, 1]), 2).tolist()
    [3.0, 2.0]
    >>> best_window_scores(torch.tensor([[1.0, 3.0, 2.0], [4.0, 0.0, 5.0]]),
    ...                    torch.tensor([0, 0, 1]), 2).tolist()
    [[3.0, 2.0], [4.0, 5.0]]
    """
    index = owners.to(scores.device).expand(*scores.shape[:-1], -1)
    best = scores.new_full((*scores.shape[:-1], documents), float("-inf"))
    return best.scatter_reduce(-1, index, scores, reduce="amax")
