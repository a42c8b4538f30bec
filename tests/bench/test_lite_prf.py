"""bench/lite_prf.py: the feedback maths (padding and permutation invariance, what it lifts),
and cross-validation that never chooses a setting on the queries it scores."""

from __future__ import annotations

import doctest
import random

import pytest
import torch

import bench.lite_experiment
import bench.lite_prf
from bench.lite_prf import (
    Feedback,
    FeedbackConfig,
    cross_validated,
    expansion_scores,
    feedback_rescore,
    per_token_maxsim,
    rescore,
    spherical_kmeans,
)
from evaluation.metrics import MetricsResult

CONFIG = FeedbackConfig(docs=3, clusters=6, expansions=3, weight=0.75, match=0.5)


def unit(*shape: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(*shape, generator=generator), dim=-1)


def candidates(n: int = 8, tokens: int = 6, dim: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    docs = unit(n, tokens, dim, seed=1)
    mask = torch.ones(n, tokens, dtype=torch.bool)
    mask[::2, -2:] = False  # every other candidate is shorter
    return docs, mask


def test_padding_never_changes_a_score() -> None:
    query, (docs, mask) = unit(3, 16), candidates()
    base = feedback_rescore(query, docs, mask, CONFIG)
    junk = unit(8, 4, 16, seed=7) * 5
    padded = feedback_rescore(
        query,
        torch.cat([docs, junk], dim=1),
        torch.cat([mask, torch.zeros(8, 4, dtype=torch.bool)], dim=1),
        CONFIG,
    )
    torch.testing.assert_close(padded, base)


def test_permuting_candidates_permutes_scores() -> None:
    query, (docs, mask) = unit(3, 16), candidates()
    order = torch.randperm(8, generator=torch.Generator().manual_seed(3))
    base = feedback_rescore(query, docs, mask, CONFIG)
    permuted = feedback_rescore(query, docs[order], mask[order], CONFIG)
    torch.testing.assert_close(permuted, base[order])


def test_without_weight_it_ranks_as_maxsim() -> None:
    query, (docs, mask) = unit(3, 16), candidates()
    plain = feedback_rescore(query, docs, mask, FeedbackConfig(weight=0.0))
    torch.testing.assert_close(plain, per_token_maxsim(query, docs, mask).sum(1) / 3)


def test_candidates_sharing_the_feedback_topic_move_up() -> None:
    """The two candidates that match the query both hold a term the query lacks (axis 1);
    feedback lifts a third candidate holding that term above candidates holding neither."""
    dim = 16
    axes = torch.eye(dim)
    query = axes[:1]  # the query is about axis 0; axis 1 is a related term it lacks
    docs = torch.stack(
        [axes[[0, 1, 5]], axes[[0, 1, 6]], axes[[1, 7, 8]], axes[[9, 10, 11]], axes[[12, 13, 14]]]
    )
    mask = torch.ones(5, 3, dtype=torch.bool)
    config = FeedbackConfig(docs=2, clusters=3, expansions=1, weight=1.0, match=0.9)
    first = per_token_maxsim(query, docs, mask).mean(1)
    assert float(first[2]) == float(first[3]) == float(first[4]) == 0.0
    rescored = feedback_rescore(query, docs, mask, config)
    assert float(rescored[2]) > float(rescored[3]) == float(rescored[4])


def test_kmeans_is_deterministic_and_unit_length() -> None:
    points = unit(40, 8, seed=2)
    first, second = spherical_kmeans(points, 5), spherical_kmeans(points, 5)
    assert torch.equal(first, second) and first.shape == (5, 8)
    torch.testing.assert_close(first.norm(dim=-1), torch.ones(5))
    assert spherical_kmeans(points[:3], 5).shape == (3, 8)


def test_nothing_to_expand_adds_nothing() -> None:
    query = torch.eye(4)[:1]
    docs = torch.eye(4)[None, :1].expand(3, 1, 4).clone()  # every token is the query token
    mask = torch.ones(3, 1, dtype=torch.bool)
    first = per_token_maxsim(query, docs, mask).mean(1)
    assert torch.equal(expansion_scores(query, docs, mask, first, CONFIG), torch.zeros(3))


@pytest.mark.parametrize("field", ["docs", "clusters", "expansions"])
def test_config_rejects_empty_settings(field: str) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FeedbackConfig(**{field: 0})
    with pytest.raises(ValueError, match="negative"):
        FeedbackConfig(weight=-1)


def test_the_docstring_examples_hold() -> None:
    assert doctest.testmod(bench.lite_prf).failed == 0
    assert doctest.testmod(bench.lite_experiment).failed == 0  # kfold, shared with DL19 5-fold


def test_grid_cells_score_as_their_functions() -> None:
    query, (docs, mask) = unit(3, 16), candidates()
    first = per_token_maxsim(query, docs, mask).mean(1)
    torch.testing.assert_close(rescore(query, docs, mask, Feedback("none")), first)
    expand = Feedback("expand", docs=3, weight=0.5, expansions=2)
    config = FeedbackConfig(docs=3, weight=0.5, expansions=2)
    torch.testing.assert_close(
        rescore(query, docs, mask, expand), feedback_rescore(query, docs, mask, config)
    )


def test_cross_validation_never_picks_on_the_held_out_fold() -> None:
    """Setting a is perfect on fold 0 and useless on fold 1; b is middling everywhere. Held
    out, fold 0 must get b (chosen on fold 1, where a fails) although a would score more on
    it, and fold 1 must get a (chosen on fold 0). The folds are lite_dl19_kfold.py's."""
    qids = sorted(f"q{i}" for i in range(10))
    random.Random(0).shuffle(qids)
    fold0 = set(qids[0::2])
    a, b = Feedback("none"), Feedback("centroid", 2, 0.5)
    per_a = {q: {"nDCG@10": 1.0 if q in fold0 else 0.0} for q in qids}
    per_b = {q: {"nDCG@10": 0.6} for q in qids}
    results = {a: MetricsResult({}, per_a, 10), b: MetricsResult({}, per_b, 10)}
    values, chosen = cross_validated(results, [a, b], folds=2, seed=0)
    assert chosen == [b, a]
    assert values == {q: 0.6 if q in fold0 else 0.0 for q in qids}
