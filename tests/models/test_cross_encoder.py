"""Cross-encoder re-rankers: any sequence-classification model folder or hub name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from models.calibration import ScoreCalibration
from models.cross_encoder import CrossEncoderConfig, CrossEncoderReranker, is_cross_encoder
from models.registry import load_late_interaction, load_reranker, reranker_max_tokens
from models.reranker import DualEncoderReranker
from tests.conftest import build_tiny_bert

QUERY = "what do jewellers use to look at gems"
DOCUMENTS = [
    "A loupe is a small magnification device.",
    "Bananas are yellow.",
    "Stocks fell sharply on Monday after a long week of losses in every market.",
    "Jewellers inspect gems with a loupe.",
    "",
]


@pytest.fixture(scope="module")
def one_label(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("ce-1"), labels=1)


def direct_logits(folder: Path, query: str, documents: list[str]) -> torch.Tensor:
    """The classifier's logits ``(documents, labels)``, one unpadded pair at a time (as a
    batch of one: the tokenizer drops an empty second text's [SEP] only outside batches)."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.inference_mode():
        return torch.cat(
            [model(**tokenizer([query], [text], return_tensors="pt")).logits for text in documents]
        )


def test_a_sequence_classifier_loads_as_a_cross_encoder(one_label: Path, tiny_model_dir: Path):
    assert is_cross_encoder(one_label) and not is_cross_encoder(tiny_model_dir)
    assert not is_cross_encoder(one_label / "missing")
    reranker = load_reranker(str(one_label), device="cpu")
    assert isinstance(reranker, CrossEncoderReranker)
    assert reranker.name == f"cross-encoder:{one_label}"
    # its position table holds 128 tokens, so a pair holds 128, not the default 512, and a
    # long document is read as up to 8 windows of 64 tokens (the rest is the query's),
    # overlapping by 32: 288 tokens
    assert reranker.config.max_length == 128
    assert reranker_max_tokens(reranker) == 288
    # an encoder without a classifier head is still the dual encoder's cosine
    assert isinstance(load_reranker(str(tiny_model_dir), device="cpu"), DualEncoderReranker)
    # and a token store cannot be written for a cross-encoder
    with pytest.raises(ValueError, match=r"is a cross-encoder: .* no token matrices"):
        load_late_interaction(str(one_label))


def test_scores_are_the_classifiers_logits_whatever_the_batching(one_label: Path):
    expected = direct_logits(one_label, QUERY, DOCUMENTS)[:, 0].numpy()
    for batch_size in (1, 2, 16):
        reranker = CrossEncoderReranker.load(
            CrossEncoderConfig(str(one_label), batch_size=batch_size, device="cpu")
        )
        np.testing.assert_allclose(reranker.score(QUERY, DOCUMENTS), expected, atol=1e-5)
    order = [3, 0, 4, 2, 1]
    permuted = reranker.score(QUERY, [DOCUMENTS[i] for i in order])
    np.testing.assert_allclose(permuted, expected[order], atol=1e-5)
    other = "how do markets move"
    together = reranker.score_many([QUERY, other, QUERY], [DOCUMENTS, DOCUMENTS[:2], []])
    np.testing.assert_allclose(together[0], expected, atol=1e-5)
    np.testing.assert_allclose(together[1], reranker.score(other, DOCUMENTS[:2]), atol=1e-5)
    assert together[2].shape == (0,) and together[2].dtype == np.float32
    with pytest.raises(ValueError, match="one document list per query"):
        reranker.score_many([QUERY], [])


def test_relevance_is_the_models_sigmoid_unless_calibrated(one_label: Path, tmp_path: Path):
    reranker = CrossEncoderReranker.load(CrossEncoderConfig(str(one_label), device="cpu"))
    assert reranker.calibration is None
    scores = np.array([-3.0, 0.0, 2.5], dtype=np.float32)
    np.testing.assert_allclose(
        reranker.relevance_scores(QUERY, scores), 1 / (1 + np.exp(-scores)), rtol=1e-6
    )
    folder = build_tiny_bert(tmp_path / "calibrated", labels=1)
    ScoreCalibration(slope=2.0, intercept=-1.0, per_query_token=False).save(folder)
    calibrated = load_reranker(str(folder), device="cpu")
    assert calibrated.calibration is not None
    probabilities = calibrated.relevance_scores(QUERY, scores)
    assert probabilities is not None
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(1 - 2 * scores)), rtol=1e-5)


def test_two_labels_score_the_log_odds_of_the_second(tmp_path: Path):
    folder = build_tiny_bert(tmp_path / "ce-2", labels=2)
    reranker = load_reranker(str(folder), device="cpu")
    logits = direct_logits(folder, QUERY, DOCUMENTS)
    scores = reranker.score(QUERY, DOCUMENTS)
    np.testing.assert_allclose(scores, (logits[:, 1] - logits[:, 0]).numpy(), atol=1e-5)
    probabilities = reranker.relevance_scores(QUERY, scores)
    assert probabilities is not None
    np.testing.assert_allclose(probabilities, logits.softmax(-1)[:, 1].numpy(), atol=1e-5)


def test_other_label_counts_are_refused_clearly(tmp_path: Path):
    folder = build_tiny_bert(tmp_path / "ce-3", labels=3)
    with pytest.raises(ValueError, match="one or two output labels, not 3"):
        load_reranker(str(folder), device="cpu")


def test_pairs_longer_than_the_model_reads_are_cut(one_label: Path):
    reranker = CrossEncoderReranker.load(
        CrossEncoderConfig(str(one_label), max_length=4096, device="cpu")
    )
    assert reranker.config.max_length == 128
    long_text = "loupe " * 1000
    scores = reranker.score_many([long_text, QUERY], [[long_text, "short"], [long_text]])
    assert all(np.isfinite(s).all() for s in scores)
    # the text past the first 128 tokens of a pair is not read
    same = reranker.score(QUERY, [long_text, "loupe " * 500])
    assert same[0] == pytest.approx(same[1], abs=1e-5)


def test_a_long_document_scores_as_its_best_window(one_label: Path):
    """A document too long to share a pair with the query is read as overlapping windows of
    its text, and scores as the best of them; with max_windows 1 it is cut, as before."""
    from models.cross_encoder import window_spans
    from models.registry import reranker_window_tokens

    reranker = CrossEncoderReranker.load(CrossEncoderConfig(str(one_label), device="cpu"))
    long_doc = "banana " * 150 + "jewellers use a loupe to look at gems " * 10
    offsets = reranker.tokenizer(long_doc, add_special_tokens=False, return_offsets_mapping=True)[
        "offset_mapping"
    ]
    spans = window_spans(offsets, reranker.window_size, 32, 8)
    assert len(spans) > 1 and spans[0][0] == 0 and spans[-1][1] == len(long_doc.rstrip())
    one_window = CrossEncoderReranker.load(
        CrossEncoderConfig(str(one_label), device="cpu", max_windows=1)
    )
    windows = [long_doc[begin:end] for begin, end in spans]
    per_window = one_window.score(QUERY, windows)
    assert per_window.argmax() > 0 and per_window.max() - per_window[0] > 1e-5  # not the first
    scores = reranker.score(QUERY, [DOCUMENTS[0], long_doc, DOCUMENTS[1]])
    np.testing.assert_allclose(scores[1], per_window.max(), atol=1e-6)
    # short documents read whole, as before
    np.testing.assert_allclose(scores[[0, 2]], one_window.score(QUERY, DOCUMENTS[:2]), atol=1e-5)
    # cut, the long document is the pair the tokenizer truncates
    tokenizer = AutoTokenizer.from_pretrained(one_label)
    model = AutoModelForSequenceClassification.from_pretrained(one_label).eval()
    pair = tokenizer(
        [QUERY], [long_doc], truncation="longest_first", max_length=128, return_tensors="pt"
    )
    with torch.inference_mode():
        cut = model(**pair).logits[0, 0].item()
    assert one_window.score(QUERY, [long_doc])[0] == pytest.approx(cut, abs=1e-5)
    assert reranker_window_tokens(reranker, 1) == 64
    assert reranker_window_tokens(reranker, 3) == 64 + 2 * 32
    assert reranker_window_tokens(one_window, 3) == 128 - 3  # one pair, less [CLS] [SEP] [SEP]
    with pytest.raises(ValueError, match="max_windows"):
        CrossEncoderReranker.load(CrossEncoderConfig(str(one_label), max_windows=0))
