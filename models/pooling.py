"""Pooling token embeddings into one vector per text (pure functions)."""

from __future__ import annotations

import torch


def mean_pool(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average the unmasked token vectors.

    Args:
        tokens: ``(batch, tokens, dim)`` token embeddings.
        mask: ``(batch, tokens)``, 1 for real tokens and 0 for padding.

    Returns:
        ``(batch, dim)``; padding never changes the result.

    >>> t = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    >>> mean_pool(t, torch.tensor([[1, 1, 0]])).tolist()
    [[2.0, 3.0]]
    """
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    summed = (tokens * weights).sum(dim=1)
    counts = weights.sum(dim=1).clamp(min=1e-9)
    return summed / counts


def cls_pool(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The first token's vector: ``(batch, tokens, dim) -> (batch, dim)``.

    >>> cls_pool(torch.tensor([[[1.0, 2.0], [3.0, 4.0]]]), torch.tensor([[1, 1]])).tolist()
    [[1.0, 2.0]]
    """
    del mask
    return tokens[:, 0]


def l2_normalize(vectors: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Scale each row to unit length: ``(..., dim) -> (..., dim)``.

    >>> l2_normalize(torch.tensor([[3.0, 4.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929]]
    """
    return vectors / vectors.norm(dim=-1, keepdim=True).clamp(min=eps)
