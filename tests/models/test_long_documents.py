"""Documents longer than ``d_len``: read as windows, scored as their best window (MaxP)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from models.encoder import EncoderConfig, TextEncoder
from models.late_interaction import LateInteractionConfig, LateInteractionModel
from models.lite import ScorerConfig, ScorerKind

D_LEN = 12
LONG = " ".join(f"word{i}" for i in range(40))


def tiny_late(
    tiny_model_dir: Path,
    kind: ScorerKind = "maxsim",
    doc_windows: int = 1,
    window_overlap: int | None = None,
) -> LateInteractionModel:
    encoder = TextEncoder(EncoderConfig(model=str(tiny_model_dir), device="cpu", max_length=D_LEN))
    config = LateInteractionConfig(
        dim=8,
        q_len=8,
        d_len=D_LEN,
        scorer=ScorerConfig(kind, q_len=8, d_len=D_LEN, top_k=4, sorted_hidden=8),
        doc_windows=doc_windows,
        window_overlap=window_overlap,
    )
    torch.manual_seed(0)
    return LateInteractionModel(config, encoder).eval()


def test_a_folder_saved_before_windows_reads_the_first_window_only() -> None:
    data = LateInteractionConfig(d_len=128).to_dict()
    assert data["doc_windows"] == 8 and data["window_overlap"] == 32
    del data["doc_windows"], data["window_overlap"]
    legacy = LateInteractionConfig.from_dict(data)
    assert legacy.doc_windows == 1 and legacy.window_overlap == 32


def test_bad_window_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="doc_windows"):
        LateInteractionConfig(d_len=D_LEN, doc_windows=0)
    with pytest.raises(ValueError, match="window_overlap"):
        LateInteractionConfig(d_len=D_LEN, window_overlap=D_LEN - 2)


def test_a_long_text_is_stored_as_full_windows_end_to_end(tiny_model_dir: Path) -> None:
    windowed = tiny_late(tiny_model_dir, doc_windows=3, window_overlap=2)
    first_only = tiny_late(tiny_model_dir, doc_windows=1)
    first_only.load_state_dict(windowed.state_dict())
    long, short = windowed.document_matrices([LONG, "word1 word2"])
    windows = windowed.encoder.tokenize_windows([LONG], D_LEN, 2, 3)[0]
    assert [len(w) for w in windows] == [D_LEN, D_LEN, D_LEN]
    assert long.shape == (3 * D_LEN, 8)
    assert short.shape == (len(windowed.encoder.tokenize(["word1 word2"])["input_ids"][0]), 8)
    head, _ = first_only.document_matrices([LONG, "word1 word2"])
    np.testing.assert_allclose(long[:D_LEN].astype(np.float32), head.astype(np.float32), atol=2e-3)


@pytest.mark.parametrize("kind", ["maxsim", "sorted", "separable"])
def test_a_windowed_document_scores_as_its_best_window(
    tiny_model_dir: Path, kind: ScorerKind
) -> None:
    model = tiny_late(tiny_model_dir, kind, doc_windows=4, window_overlap=3)
    query = model.encode_queries(["word7 word30"])
    q = query.tokens[0, : int(query.mask[0].sum())]
    long, short = model.document_matrices([LONG, "word7"])
    assert long.shape[0] > 2 * D_LEN
    pieces = [long[start : start + D_LEN] for start in range(0, long.shape[0], D_LEN)]
    with torch.inference_mode():
        scores = model.score_matrices(q, [short, long])
        each = model.score_matrices(q, pieces)
        swapped = model.score_matrices(q, [long, short])
    assert scores[1].item() == pytest.approx(each.max().item(), abs=1e-5)
    assert scores[0].item() == pytest.approx(model.score_matrices(q, [short]).item(), abs=1e-5)
    torch.testing.assert_close(swapped, scores.flip(0))


def test_one_window_models_score_as_before(tiny_model_dir: Path) -> None:
    model = tiny_late(tiny_model_dir, doc_windows=1)
    assert model.document_matrices([LONG])[0].shape[0] == D_LEN
    windowed = LateInteractionModel(replace(model.config, doc_windows=2), model.encoder)
    assert windowed.document_matrices([LONG])[0].shape[0] == 2 * D_LEN


@pytest.mark.parametrize("kind", ["maxsim", "sorted"])
def test_a_pool_of_windows_scores_as_each_query_scores_the_stored_matrices(
    tiny_model_dir: Path, kind: ScorerKind
) -> None:
    """Training's path (every window in one batch, with gradients) and the service's (stored
    matrices split again) give each document the same best-window score."""
    model = tiny_late(tiny_model_dir, kind, doc_windows=3, window_overlap=2)
    docs = [LONG, "word1 word2", "word30 " + LONG]
    queries = model.encode_queries(["word33 word34", "word1"])
    pool = model.encode_document_windows(docs, 3)
    assert pool.owners.tolist() == [0, 0, 0, 1, 2, 2, 2]
    stored = model.document_matrices(docs)
    with torch.no_grad():
        together = model.score_windows(queries.tokens, queries.mask, pool)
        for row, (q, mask) in enumerate(zip(queries.tokens, queries.mask, strict=True)):
            alone = model.score_matrices(q[mask], stored)
            np.testing.assert_allclose(together[row], alone, atol=2e-3)


def test_gradients_reach_each_document_through_its_best_window_only(tiny_model_dir: Path) -> None:
    model = tiny_late(tiny_model_dir, doc_windows=3, window_overlap=2)
    q = model.encode_queries(["word33 word34"])
    pool = model.encode_document_windows([LONG], 3)
    tokens = pool.tokens.detach().requires_grad_(True)
    scores = model.score_windows(q.tokens, q.mask, replace(pool, tokens=tokens))
    scores.sum().backward()
    assert tokens.grad is not None
    touched = [bool(g.abs().sum() > 0) for g in tokens.grad]
    assert sum(touched) == 1, touched


@pytest.mark.parametrize(("doc_windows", "overlap"), [(1, None), (3, 2), (4, 0)])
def test_the_tokens_read_are_counted_from_the_matrices_as_the_tokenizer_counts_them(
    tiny_model_dir: Path, doc_windows: int, overlap: int | None
) -> None:
    from models.late_reranker import LateInteractionReranker

    model = tiny_late(tiny_model_dir, doc_windows=doc_windows, window_overlap=overlap)
    texts = ["", *(" ".join(f"word{i}" for i in range(n)) for n in range(0, 60, 3))]
    groups = [texts[:7], texts[7:], []]
    _, counted = LateInteractionReranker(model).score_many_counted(["q", "q", "q"], groups)
    limit = model.config.max_document_tokens
    assert counted == [sum(model.encoder.count_tokens(g, limit)) if g else 0 for g in groups]
    assert counted[1] > len(groups[1]) * D_LEN or doc_windows == 1
