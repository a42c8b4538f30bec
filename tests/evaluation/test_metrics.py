from __future__ import annotations

import math
from pathlib import Path

import pytest

from evaluation.compare import compare, plot_differences
from evaluation.metrics import default_measures, evaluate
from index.readers import read_qrels, read_run


def test_ndcg_on_a_hand_checked_case() -> None:
    qrels = {"q1": {"a": 3, "b": 1, "c": 0}}
    run = {"q1": {"b": 3.0, "a": 2.0, "c": 1.0}}
    dcg = 1 / math.log2(2) + 3 / math.log2(3)
    ideal = 3 / math.log2(2) + 1 / math.log2(3)
    result = evaluate(qrels, run, ["nDCG@10", "RR@10", "R@100"])
    assert result.aggregate["nDCG@10"] == pytest.approx(dcg / ideal, abs=1e-6)
    assert result.aggregate["RR@10"] == pytest.approx(1.0)
    assert result.aggregate["R@100"] == pytest.approx(1.0)


def test_queries_missing_from_the_run_count_as_zero() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    result = evaluate(qrels, {"q1": {"a": 1.0}}, ["nDCG@10"])
    assert result.num_queries == 2
    assert result.aggregate["nDCG@10"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no query has judgments"):
        evaluate(qrels, {}, ["nDCG@10"], query_ids=["zz"])


def test_default_measures_follow_depth_and_grades() -> None:
    binary = default_measures({"q": {"a": 1}}, {"q": {"a": 1.0}})
    assert binary == ["nDCG@10", "RR@10", "R@100"]
    deep_graded = default_measures({"q": {"a": 3}}, {"q": {str(i): 1.0 for i in range(1000)}})
    assert "R@1000" in deep_graded and "RR(rel=2)@10" in deep_graded


def test_compare_counts_wins_and_plots(tmp_path: Path) -> None:
    qrels = {f"q{i}": {"a": 1} for i in range(6)}
    good = {q: {"a": 2.0, "z": 1.0} for q in qrels}
    bad = {q: ({"z": 2.0, "a": 1.0} if i % 2 else {"a": 2.0}) for i, q in enumerate(qrels)}
    comparison = compare(evaluate(qrels, good, ["RR@10"]), evaluate(qrels, bad, ["RR@10"]), "RR@10")
    assert (comparison.wins, comparison.losses, comparison.ties) == (3, 0, 3)
    assert comparison.mean_difference == pytest.approx(0.25)
    png = plot_differences(comparison, tmp_path / "diff.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.data
def test_reproduces_published_dl19_scores(shared_data: Path) -> None:
    dl19 = shared_data / "trec-dl-2019-passage"
    qrels = read_qrels(dl19 / "qrels.trec")
    published = {"BM25.top100": 0.5058, "SPLADE_P_P_ENSEMBLE_DISTIL.top100": 0.7308}
    for name, expected in published.items():
        result = evaluate(qrels, read_run(dl19 / f"run.{name}.trec"), ["nDCG@10"])
        assert result.aggregate["nDCG@10"] == pytest.approx(expected, abs=5e-5)
