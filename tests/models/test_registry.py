"""Naming a re-ranker: ``maxsim[:MODEL]`` is untrained MaxSim over any encoder's tokens."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from index.builder import IndexBuildConfig, build_index
from index.rerank import rerank_hits_many, stored_fraction
from index.searcher import IndexReader, Searcher
from models.encoder import TextEncoder
from models.late_reranker import LateInteractionReranker
from models.registry import load_late_interaction, load_reranker
from tests.conftest import build_tiny_bert

DOCS = ["cats chase mice", "dogs bark at cats", "stock markets fell", "rain in spain"]


@torch.no_grad()
def maxsim_by_hand(encoder: TextEncoder, query: str, documents: list[str]) -> np.ndarray:
    """Sum over query tokens of the best cosine to any document token."""

    def unit_tokens(text: str, length: int) -> torch.Tensor:
        out = encoder.forward_tokens(encoder.tokenize([text], length))
        tokens = out.embeddings[0, : int(out.mask[0].sum())].float()
        return torch.nn.functional.normalize(tokens, dim=-1)

    q = unit_tokens(query, 32)
    return np.array([float((q @ unit_tokens(d, 128).T).max(1).values.sum()) for d in documents])


def test_maxsim_spec_scores_untrained_maxsim(tiny_model_dir: Path, tiny_encoder) -> None:
    reranker = load_reranker(f"maxsim:{tiny_model_dir}", device="cpu")
    assert isinstance(reranker, LateInteractionReranker)
    assert reranker.name == f"maxsim:{tiny_model_dir}"
    assert reranker.model.dim == tiny_encoder.dim  # no projection
    scores = reranker.score("do cats bark", DOCS)
    expected = maxsim_by_hand(reranker.model.encoder, "do cats bark", DOCS)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)


def test_maxsim_fingerprint_follows_the_backbone_weights(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    first = load_late_interaction(f"maxsim:{tiny_model_dir}", device="cpu")
    again = load_late_interaction(f"maxsim:{tiny_model_dir}", device="cpu")
    assert first.fingerprint is not None and first.fingerprint == again.fingerprint
    other_dir = build_tiny_bert(tmp_path / "other", seed=1)
    other = load_late_interaction(f"maxsim:{other_dir}", device="cpu")
    assert other.fingerprint != first.fingerprint


def test_index_token_store_serves_zero_shot_maxsim(
    tmp_path: Path, tiny_corpus: Path, tiny_encoder
) -> None:
    spec = f"maxsim:{tiny_encoder.model_name}"
    build_index(
        IndexBuildConfig(
            corpus=tiny_corpus,
            out=tmp_path / "index",
            token_store=True,
            reranker=spec,
            show_progress=False,
        ),
        encoder=tiny_encoder,
    )
    reader = IndexReader.open(tmp_path / "index")
    assert reader.tokens is not None and reader.tokens.dim == tiny_encoder.dim
    reranker = load_reranker(spec, device="cpu")
    hits = Searcher(reader, tiny_encoder).search(["cats and dogs"], k=4)[0]
    assert stored_fraction(reranker, reader, hits) == 1.0
    from_store = rerank_hits_many(reranker, reader, ["cats and dogs"], [hits])[0]
    encoded = reranker.score("cats and dogs", [h.document.full_text for h in hits])
    np.testing.assert_allclose(from_store, encoded, atol=2e-2)  # float16 storage


def test_unknown_late_interaction_spec_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="maxsim"):
        load_late_interaction(str(tmp_path))


def test_shipped_models_come_with_their_calibrations(minilm_encoder) -> None:
    """``default`` and ``maxsim`` (over the packaged MiniLM) load the calibrations shipped for
    them; untrained MaxSim over another encoder has none."""
    from models.registry import SHIPPED_MAXSIM_CALIBRATION, SHIPPED_RERANKER

    for spec, folder in (("default", SHIPPED_RERANKER), ("maxsim", SHIPPED_MAXSIM_CALIBRATION)):
        reranker = load_reranker(spec, device="cpu", share_encoder=minilm_encoder)
        assert reranker.calibration is not None, spec
        assert reranker.calibration.per_query_token
        assert (folder / "calibration.json").is_file()
        query, docs = "what do jewellers use", ["A loupe is a jeweller's lens.", "Rain in Spain."]
        p = reranker.relevance_scores(query, reranker.score(query, docs))
        assert p is not None and 0 <= p[1] < p[0] <= 1


def test_maxsim_over_another_encoder_has_no_calibration(tiny_model_dir: Path) -> None:
    reranker = load_reranker(f"maxsim:{tiny_model_dir}", device="cpu")
    assert reranker.calibration is None
    assert reranker.relevance_scores("q", np.array([1.0])) is None


def test_shipped_models_read_past_the_first_window(minilm_encoder) -> None:
    """Two documents that share their first 128 tokens and differ after them: only reading
    the windows beyond the first tells the answer from the distractor."""
    preamble = " ".join(["The committee met on Tuesday to review the annual budget."] * 14)
    answer = preamble + " A loupe is the small magnifying lens that jewellers use."
    distractor = preamble + " Bananas are rich in potassium and grow in the tropics."
    assert minilm_encoder.count_tokens([preamble])[0] > 128
    for spec in ("default", "maxsim"):
        reranker = load_reranker(spec, device="cpu", share_encoder=minilm_encoder)
        scores = reranker.score("what do jewellers use", [distractor, answer])
        assert scores[1] > scores[0], spec
