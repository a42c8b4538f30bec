from __future__ import annotations

import numpy as np

from models.encoder import EncoderConfig, TextEncoder
from models.index_encoding import encode_for_index, shares_backbone
from models.late_interaction import LateInteractionConfig, LateInteractionModel
from models.lite import ScorerConfig


def test_one_shared_pass_gives_what_two_passes_give(tiny_model_dir) -> None:
    encoder = TextEncoder(EncoderConfig(model=str(tiny_model_dir), device="cpu", max_length=64))
    lite = LateInteractionModel(
        LateInteractionConfig(dim=8, q_len=8, d_len=12, scorer=ScorerConfig("maxsim")),
        TextEncoder(EncoderConfig(model=str(tiny_model_dir), device="cpu", max_length=12)),
    )
    assert shares_backbone(encoder, lite)
    texts = ["short one", "a much longer passage " * 6, "mid sized passage here", "x"]
    vectors, matrices = encode_for_index(encoder, lite, texts, batch_size=2)
    np.testing.assert_allclose(vectors, encoder.encode(texts), atol=1e-5)
    separate = lite.document_matrices(texts)
    assert len(matrices) == len(texts)
    for shared, alone in zip(matrices, separate, strict=True):
        assert shared.shape == alone.shape
        np.testing.assert_allclose(shared.astype(np.float32), alone.astype(np.float32), atol=2e-3)
