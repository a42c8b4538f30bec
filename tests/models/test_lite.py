from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from models.late_interaction import LateInteractionConfig, LateInteractionModel
from models.late_reranker import LateInteractionReranker
from models.lite import SCORERS, ScorerConfig, ScorerKind, build_scorer
from models.scoring import maxsim, similarity_matrix

SMALL = {
    "q_len": 6,
    "d_len": 10,
    "row_hidden": 16,
    "row_out": 8,
    "col_hidden": 8,
    "col_out": 4,
    "flat_hidden": 16,
    "top_k": 4,
    "sorted_hidden": 8,
}


def random_pairs(batch: int = 2, docs: int = 3, q: int = 4, d: int = 7, dim: int = 5):
    torch.manual_seed(0)
    queries = torch.nn.functional.normalize(torch.randn(batch, q, dim), dim=-1)
    documents = torch.nn.functional.normalize(torch.randn(batch, docs, d, dim), dim=-1)
    return queries, documents


def randomise(scorer: torch.nn.Module) -> None:
    """Give every parameter random values, so no zero-initialised layer hides a bug."""
    with torch.no_grad():
        for p in scorer.parameters():
            p.normal_(0, 0.5)


@pytest.mark.parametrize("kind", sorted(SCORERS))
def test_padding_never_changes_a_score(kind: ScorerKind) -> None:
    scorer = build_scorer(ScorerConfig(kind=kind, **SMALL)).eval()
    randomise(scorer)
    q, d = random_pairs()
    q_mask, d_mask = torch.ones(2, 4, dtype=torch.bool), torch.ones(2, 3, 7, dtype=torch.bool)
    base = scorer(similarity_matrix(q, d), q_mask, d_mask)
    # Pad queries with 2 and documents with 3 junk tokens that the masks hide.
    q_pad = torch.cat([q, torch.randn(2, 2, 5)], dim=1)
    d_pad = torch.cat([d, torch.randn(2, 3, 3, 5)], dim=2)
    q_mask_pad = torch.cat([q_mask, torch.zeros(2, 2, dtype=torch.bool)], dim=1)
    d_mask_pad = torch.cat([d_mask, torch.zeros(2, 3, 3, dtype=torch.bool)], dim=2)
    padded = scorer(similarity_matrix(q_pad, d_pad), q_mask_pad, d_mask_pad)
    torch.testing.assert_close(padded, base, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", sorted(SCORERS))
def test_permuting_candidates_permutes_scores(kind: ScorerKind) -> None:
    scorer = build_scorer(ScorerConfig(kind=kind, **SMALL)).eval()
    randomise(scorer)
    q, d = random_pairs(docs=5)
    q_mask, d_mask = torch.ones(2, 4), torch.ones(2, 5, 7)
    d_mask[:, 1, 5:] = 0
    scores = scorer(similarity_matrix(q, d), q_mask, d_mask)
    perm = torch.tensor([3, 0, 4, 1, 2])
    permuted = scorer(similarity_matrix(q, d[:, perm]), q_mask, d_mask[:, perm])
    torch.testing.assert_close(permuted, scores[:, perm], atol=1e-5, rtol=1e-5)


def test_untrained_sorted_lite_is_maxsim() -> None:
    scorer = build_scorer(ScorerConfig(kind="sorted", **SMALL))
    q, d = random_pairs()
    sim = similarity_matrix(q, d)
    q_mask, d_mask = torch.ones(2, 4), torch.ones(2, 3, 7)
    torch.testing.assert_close(scorer(sim, q_mask, d_mask), maxsim(sim, q_mask, d_mask))


@pytest.mark.parametrize("kind", ["separable", "flattened"])
def test_lite_learns_maxsim_on_random_matrices(kind: ScorerKind) -> None:
    torch.manual_seed(0)
    config = ScorerConfig(
        kind=kind,
        q_len=2,
        d_len=4,
        row_hidden=64,
        row_out=16,
        col_hidden=32,
        col_out=8,
        flat_hidden=128,
    )
    scorer = build_scorer(config)
    steps = 400
    optimizer = torch.optim.Adam(scorer.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    q_mask, d_mask = torch.ones(256, 2), torch.ones(256, 1, 4)

    def sample() -> tuple[torch.Tensor, torch.Tensor]:
        sim = torch.rand(256, 1, 2, 4) * 2 - 1
        return sim, maxsim(sim, q_mask, d_mask)

    for _ in range(steps):
        sim, target = sample()
        loss = torch.mean((scorer(sim, q_mask, d_mask) - target) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    sim, target = sample()
    with torch.no_grad():
        error = torch.mean((scorer(sim, q_mask, d_mask) - target) ** 2) / target.var()
    assert float(error) < 0.1  # explains over 90% of MaxSim's variance on fresh matrices


def test_save_load_round_trip_and_reranker(tmp_path: Path, tiny_encoder) -> None:
    config = LateInteractionConfig(
        dim=16, q_len=8, d_len=16, scorer=ScorerConfig(kind="separable", q_len=8, d_len=16)
    )
    model = LateInteractionModel(config, tiny_encoder)
    randomise(model.scorer)
    reranker = LateInteractionReranker(model)
    docs = ["cats purr softly", "the market fell", "a longer document about many things"]
    before = reranker.score("cats", docs)
    model.save(tmp_path / "lite")
    loaded = LateInteractionModel.load(tmp_path / "lite", device="cpu")
    assert loaded.config == model.config
    after = LateInteractionReranker(loaded).score("cats", docs)
    np.testing.assert_allclose(after, before, atol=1e-5)
    # Stored float16 matrices give the same ranking without re-encoding the documents.
    stored = loaded.document_matrices(docs)
    assert stored[0].dtype == np.float16 and stored[0].shape[1] == 16
    from_store = LateInteractionReranker(loaded).score_stored("cats", stored)
    np.testing.assert_allclose(from_store, after, atol=5e-3)
    assert (tmp_path / "lite" / "model.safetensors").stat().st_size < 200_000


def test_document_cache_skips_the_transformer_for_seen_documents(
    tmp_path, tiny_encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.array_cache import ArrayCache

    config = LateInteractionConfig(
        dim=8, q_len=8, d_len=16, scorer=ScorerConfig(kind="maxsim", q_len=8, d_len=16)
    )
    folder = LateInteractionModel(config, tiny_encoder).save(tmp_path / "lite")
    model = LateInteractionModel.load(folder, device="cpu")
    cached = LateInteractionReranker(model, cache=ArrayCache(1 << 20))
    docs = ["first passage", "second passage", "third"]
    before = cached.score("q", docs)
    calls = []
    original = model.document_matrices

    def counting(texts: Sequence[str], batch_size: int = 32) -> list[np.ndarray]:
        calls.append(list(texts))
        return original(texts, batch_size)

    monkeypatch.setattr(model, "document_matrices", counting)
    again = cached.score("another query", [*docs[:2], "a new one"])
    assert calls == [["a new one"]]  # only the unseen document was encoded
    assert cached.cache is not None and cached.cache.hits == 2
    np.testing.assert_allclose(cached.score("q", docs), before, atol=1e-6)
    assert again.shape == (3,)


def test_loading_can_share_an_encoder_of_the_same_frozen_backbone(tmp_path, tiny_encoder) -> None:
    config = LateInteractionConfig(
        dim=8, q_len=8, d_len=16, scorer=ScorerConfig(kind="maxsim", q_len=8, d_len=16)
    )
    folder = LateInteractionModel(config, tiny_encoder).save(tmp_path / "lite")
    alone = LateInteractionModel.load(folder, device="cpu")
    shared = LateInteractionModel.load(folder, device="cpu", share_encoder=tiny_encoder)
    assert shared.encoder is tiny_encoder and alone.encoder is not tiny_encoder
    docs = ["a passage that is long enough to be cut at sixteen tokens " * 3, "short"]
    np.testing.assert_allclose(
        LateInteractionReranker(shared).score("q", docs),
        LateInteractionReranker(alone).score("q", docs),
        atol=1e-5,
    )


def test_a_backbone_named_by_a_relative_folder_shares_the_encoder_loaded_from_it(
    tmp_path: Path, tiny_model_dir: Path, tiny_encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``maxsim:FOLDER`` with a relative folder names the same model as the first stage's
    encoder (loaded by absolute path), so it reuses it instead of loading a second copy."""
    monkeypatch.chdir(tiny_model_dir.parent)
    relative = tiny_model_dir.name
    shared = LateInteractionModel.zero_shot(relative, device="cpu", share_encoder=tiny_encoder)
    assert shared.encoder is tiny_encoder
    shutil.copytree(tiny_model_dir, tmp_path / "copy")
    monkeypatch.chdir(tmp_path)
    another = LateInteractionModel.zero_shot("copy", device="cpu", share_encoder=tiny_encoder)
    assert another.encoder is not tiny_encoder


def test_query_matrices_reused_from_the_first_stage_pass_match_a_fresh_encode(
    tmp_path, tiny_encoder
) -> None:
    """/v1/search runs the transformer once per query: the first stage's token states,
    projected, are exactly what the re-ranker would compute (queries within q_len)."""
    config = LateInteractionConfig(
        dim=8, q_len=8, d_len=16, scorer=ScorerConfig(kind="maxsim", q_len=8, d_len=16)
    )
    folder = LateInteractionModel(config, tiny_encoder).save(tmp_path / "lite")
    reranker = LateInteractionReranker(
        LateInteractionModel.load(folder, device="cpu", share_encoder=tiny_encoder)
    )
    queries = ["short query", "a query that is far longer than eight tokens in all", "x"]
    states = tiny_encoder.encode_tokens(queries)  # the first stage's pass (max_length 64)
    reused = reranker.query_matrices_from_states(tiny_encoder, states)
    assert reused[1] is None  # longer than q_len: truncated differently, so encoded again
    fresh = reranker.query_matrices(queries)
    for mine, theirs in zip(reused, fresh, strict=True):
        if mine is not None:
            torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)
    docs = [np.random.default_rng(0).standard_normal((5, 8)).astype(np.float16)] * 3
    np.testing.assert_allclose(
        np.stack(reranker.score_stored_many(queries, [docs] * 3, reused)),
        np.stack(reranker.score_stored_many(queries, [docs] * 3)),
        atol=1e-4,
    )
    other = LateInteractionReranker(LateInteractionModel.load(folder, device="cpu"))
    assert other.query_matrices_from_states(tiny_encoder, states) == [None] * 3
