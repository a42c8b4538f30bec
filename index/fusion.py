"""Reciprocal rank fusion (Cormack et al., SIGIR 2009): one ranking from several first stages."""

from __future__ import annotations

from collections.abc import Sequence

RRF_K = 60
"""The constant of the original paper, used untuned."""


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], k: int = RRF_K
) -> list[tuple[int, float]]:
    """``(key, score)`` best first, where a key's score is the sum over the rankings that hold
    it of ``1 / (k + rank)`` (rank 1 first); ties keep the order keys were first seen in.

    >>> reciprocal_rank_fusion([[7, 3, 5], [3, 9]], k=1)
    [(3, 0.8333333333333333), (7, 0.5), (9, 0.3333333333333333), (5, 0.25)]
    """
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])
