"""bench/maxsim_fusion.py: the pooled cosine equals the dual encoder's mean pooling, and the
fusion weight is chosen on the set given, never on the one scored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.lite_experiment import EvalSet
from bench.maxsim_fusion import (
    best_weight,
    cross_validated_weight_run,
    first_stage_run,
    pooled_cosine_run,
)
from models.late_interaction import LateInteractionModel
from training.token_cache import TokenCache


def toy_set(n_queries: int = 10) -> EvalSet:
    """Per query three candidates, the relevant ``r`` and two others; the first stage ranks
    ``r`` last in every query."""
    queries = {f"q{i}": f"query {i}" for i in range(n_queries)}
    top = {q: [f"{q}-r", f"{q}-x", f"{q}-y"] for q in queries}
    run = {q: {f"{q}-r": 1.0, f"{q}-x": 3.0, f"{q}-y": 2.0} for q in queries}
    qrels = {q: {f"{q}-r": 1} for q in queries}
    texts = {d: d for docs in top.values() for d in docs}
    return EvalSet(queries, qrels, run, top, texts)


def test_weight_follows_the_signal_that_ranks_the_relevant_passage_first() -> None:
    spec = toy_set()
    first_stage = first_stage_run(spec)
    # MaxSim puts r just below x in half the queries; the other signal is always right.
    maxsim = {
        q: {f"{q}-r": 1.0 - 0.2 * (i % 2), f"{q}-x": 0.9, f"{q}-y": 0.0}
        for i, q in enumerate(spec.queries)
    }
    right = {q: {f"{q}-r": 1.0, f"{q}-x": 0.0, f"{q}-y": 0.0} for q in spec.queries}
    assert best_weight(spec, maxsim, right) > 0.0
    assert best_weight(spec, maxsim, first_stage) == 0.0  # the first stage is always wrong
    run, weights = cross_validated_weight_run(spec, maxsim, right)
    assert len(weights) == 5 and set(run) == set(spec.queries)
    assert all(max(scores, key=scores.__getitem__) == f"{q}-r" for q, scores in run.items())


def test_pooled_cosine_is_mean_pooling_of_the_cached_states(
    tiny_model_dir: Path, tiny_encoder
) -> None:
    spec = toy_set(2)
    model = LateInteractionModel.zero_shot(str(tiny_model_dir), device="cpu")
    cache = TokenCache()
    cache.ensure(model, spec.queries.values(), 32, show_progress=False)
    cache.ensure(model, spec.texts.values(), 128, show_progress=False)
    run = pooled_cosine_run(cache, spec, 32, 128)
    embedded = torch.tensor(tiny_encoder.encode(["query 0", "q0-r", "q0-x", "q0-y"]))
    embedded = torch.nn.functional.normalize(embedded, dim=-1)
    cosines = (embedded[1:] @ embedded[0]).tolist()
    got = [run["q0"][d] for d in spec.top["q0"]]
    np.testing.assert_allclose(got, cosines, atol=2e-3)  # the cache holds float16 states
