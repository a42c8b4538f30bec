"""Listwise softmax cross-entropy: the positive against its negatives (and in-batch ones)."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def listwise_softmax_ce(scores: torch.Tensor, positive_index: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of picking each query's positive among its scored candidates.

    Args:
        scores: ``(batch, candidates)``; for in-batch negatives, every query is scored against
            every document of the batch.
        positive_index: ``(batch,)`` column of each query's positive.

    Example:
        >>> s = torch.tensor([[10.0, 0.0, 0.0], [0.0, 0.0, 10.0]])
        >>> round(float(listwise_softmax_ce(s, torch.tensor([0, 2]))), 4)
        0.0001
    """
    return F.cross_entropy(scores, positive_index)
