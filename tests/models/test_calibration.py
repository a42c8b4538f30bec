from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.calibration import CALIBRATION_NAME, ScoreCalibration, fit_platt


def test_platt_fit_recovers_the_logistic_model_that_drew_the_labels() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(2.0, 3.0, size=40_000)
    labels = rng.random(scores.shape) < 1 / (1 + np.exp(-(1.5 * scores - 3.0)))
    slope, intercept = fit_platt(scores, labels.astype(int))
    assert slope == pytest.approx(1.5, abs=0.05)
    assert intercept == pytest.approx(-3.0, abs=0.1)


def test_separable_scores_still_give_finite_parameters() -> None:
    slope, intercept = fit_platt(np.array([0.0, 1.0, 5.0, 6.0]), np.array([0, 0, 1, 1]))
    assert np.isfinite([slope, intercept]).all() and slope > 0
    assert -intercept / slope == pytest.approx(3.0, abs=1e-6)


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1, 1]])
def test_one_class_cannot_be_calibrated(labels: list[int]) -> None:
    with pytest.raises(ValueError, match="both relevant and non-relevant"):
        fit_platt(np.array([1.0, 2.0, 3.0]), np.array(labels))


def test_a_calibration_round_trips_and_maps_scores_monotonically(tmp_path: Path) -> None:
    saved = ScoreCalibration(slope=0.7, intercept=-4.2, fitted_on="test pairs")
    saved.save(tmp_path)
    loaded = ScoreCalibration.load(tmp_path)
    assert loaded == saved
    p = loaded.probabilities(np.array([-50.0, 0.0, 6.0, 50.0]))
    assert p.dtype == np.float32 and np.all(np.diff(p) >= 0)
    assert p.min() >= 0.0 and p.max() <= 1.0
    assert ScoreCalibration.load(tmp_path / "nothing-here") is None


@pytest.mark.parametrize(
    "text", ["not json", '{"slope": 1.0}', '{"slope": -1.0, "intercept": 0.0}', '{"slope": "x"}']
)
def test_a_bad_calibration_file_is_refused_with_its_path(tmp_path: Path, text: str) -> None:
    (tmp_path / CALIBRATION_NAME).write_text(text)
    with pytest.raises(ValueError, match=CALIBRATION_NAME):
        ScoreCalibration.load(tmp_path)


def test_a_late_interaction_reranker_calibrates_per_query_token(tiny_encoder) -> None:
    """The same raw score is weaker evidence for a longer query: its per-token score is
    lower, so its probability is too."""
    from models.late_interaction import LateInteractionConfig, LateInteractionModel
    from models.late_reranker import LateInteractionReranker
    from models.lite import ScorerConfig

    config = LateInteractionConfig(dim=8, q_len=8, scorer=ScorerConfig(kind="maxsim", q_len=8))
    model = LateInteractionModel(config, tiny_encoder)
    calibration = ScoreCalibration(slope=4.0, intercept=-4.0, per_query_token=True)
    reranker = LateInteractionReranker(model, calibration=calibration)
    assert LateInteractionReranker(model).relevance_scores("q", np.array([1.0])) is None
    short, long = "cats", "cats and dogs and birds and fish and more words than eight"
    assert model.query_token_counts([short, long]) == [3, 8]  # [CLS] cats [SEP]; cut at q_len
    p_short = reranker.relevance_scores(short, np.array([3.0]))
    p_long = reranker.relevance_scores(long, np.array([3.0]))
    assert p_short is not None and p_long is not None
    assert p_short[0] == pytest.approx(0.5) and p_long[0] < 0.1
