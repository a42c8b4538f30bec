from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation.calibration import calibration_quality, fit_calibration, labelled_scores


def test_labels_come_from_grades_with_unjudged_as_not_relevant_or_dropped() -> None:
    run = {"q1": {"a": 3.0, "b": 2.0, "c": 1.0}, "q2": {"x": 5.0}, "q3": {"y": 1.0}}
    qrels = {"q1": {"a": 1, "b": 2}, "q2": {"x": 0}}
    scores, labels = labelled_scores(run, qrels, min_grade=2)
    assert scores.tolist() == [3.0, 2.0, 1.0, 5.0] and labels.tolist() == [0, 1, 0, 0]
    _, judged = labelled_scores(run, qrels, judged_only=True)
    assert judged.tolist() == [1, 1, 0]
    only, _ = labelled_scores(run, qrels, query_ids={"q2"})
    assert only.tolist() == [5.0]


def test_probabilities_that_match_the_outcomes_score_better_than_the_base_rate() -> None:
    rng = np.random.default_rng(1)
    p = rng.random(50_000)
    outcome = (rng.random(p.shape) < p).astype(int)
    good = calibration_quality(p, outcome)
    assert good.expected_calibration_error < 0.01
    assert good.brier < good.brier_of_prevalence
    overconfident = calibration_quality(np.clip(p * 2 - 0.5, 0, 1), outcome)
    assert overconfident.expected_calibration_error > 5 * good.expected_calibration_error
    assert good.precision_above_half is not None and good.precision_above_half > 0.7


def write_files(tmp_path: Path, invert: bool = False) -> tuple[Path, Path]:
    rng = np.random.default_rng(2)
    run_lines, qrels_lines = [], []
    for q in range(40):
        for d in range(20):
            relevant = d < 3
            score = rng.normal(2.0 if relevant else 0.0) * (-1 if invert else 1)
            run_lines.append(f"q{q} Q0 d{d} {d + 1} {score:.4f} test")
            qrels_lines.append(f"q{q} 0 d{d} {int(relevant)}")
    (tmp_path / "run.trec").write_text("\n".join(run_lines) + "\n")
    (tmp_path / "qrels.trec").write_text("\n".join(qrels_lines) + "\n")
    return tmp_path / "run.trec", tmp_path / "qrels.trec"


def test_fitting_on_a_run_matches_its_rate_of_relevance(tmp_path: Path) -> None:
    run, qrels = write_files(tmp_path)
    calibration, quality = fit_calibration(run, qrels)
    assert calibration.slope > 0 and quality.pairs == 800
    assert quality.mean_probability == pytest.approx(quality.prevalence, abs=0.01)
    assert quality.brier < quality.brier_of_prevalence
    assert "800 candidates" in calibration.fitted_on and not calibration.per_query_token
    per_token, _ = fit_calibration(run, qrels, query_tokens={f"q{q}": 4 for q in range(40)})
    assert per_token.per_query_token
    assert per_token.slope == pytest.approx(4 * calibration.slope, rel=1e-6)
    with pytest.raises(ValueError, match="no query text for 40 judged queries"):
        fit_calibration(run, qrels, query_tokens={})


def test_scores_that_rank_backwards_are_refused(tmp_path: Path) -> None:
    run, qrels = write_files(tmp_path, invert=True)
    with pytest.raises(ValueError, match="not more often relevant"):
        fit_calibration(run, qrels)
