from __future__ import annotations

import numpy as np

from models.reranker import DualEncoderReranker, Reranker


def test_dual_encoder_reranker_batches_like_single_calls(tiny_encoder) -> None:
    reranker = DualEncoderReranker(tiny_encoder)
    assert isinstance(reranker, Reranker)
    docs = [["alpha beta", "gamma"], ["delta", "epsilon zeta eta", "theta"]]
    merged = reranker.score_many(["first query", "second"], docs)
    assert [len(s) for s in merged] == [2, 3]
    np.testing.assert_allclose(merged[1], reranker.score("second", docs[1]), atol=1e-5)
    assert reranker.score("q", []).shape == (0,)
