"""``loupe calibrate``: fit a model folder's calibration.json from a re-ranked run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from loupe.cli import app
from models.calibration import CALIBRATION_NAME, ScoreCalibration
from models.late_interaction import LateInteractionConfig, LateInteractionModel
from models.lite import ScorerConfig
from models.registry import load_reranker
from tests.conftest import build_tiny_bert

runner = CliRunner()


def write_run_and_qrels(folder: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    run, qrels = [], []
    for q in range(30):
        for d in range(10):
            relevant = d < 2
            run.append(f"q{q} Q0 d{d} {d + 1} {rng.normal(3.0 if relevant else 0.0):.4f} t")
            qrels.append(f"q{q} 0 d{d} {2 if relevant else 0}")
    (folder / "run.trec").write_text("\n".join(run) + "\n")
    (folder / "qrels.trec").write_text("\n".join(qrels) + "\n")
    (folder / "queries.tsv").write_text("".join(f"q{q}\tquestion {q}\n" for q in range(30)))
    return folder / "run.trec", folder / "qrels.trec"


def lite_folder(tmp_path: Path, encoder) -> Path:
    config = LateInteractionConfig(
        backbone=encoder.backbone.path,
        dim=8,
        q_len=8,
        d_len=16,
        scorer=ScorerConfig(kind="maxsim", q_len=8, d_len=16),
    )
    return LateInteractionModel(config, encoder).save(tmp_path / "lite")


def test_calibrate_writes_the_file_the_reranker_then_loads(tmp_path: Path, tiny_encoder) -> None:
    folder = lite_folder(tmp_path, tiny_encoder)
    assert load_reranker(str(folder), device="cpu").calibration is None
    run, qrels = write_run_and_qrels(tmp_path)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(f"q{q}" for q in range(20)) + "\n")
    args = ["calibrate", str(folder), "--run", str(run), "--qrels", str(qrels)]
    queries = ["--queries", str(tmp_path / "queries.tsv")]
    result = runner.invoke(app, [*args, *queries, "--min-grade", "2", "--query-ids", str(ids)])
    assert result.exit_code == 0, result.output
    assert "on 200 candidates (20.0% relevant)" in result.output
    reranker = load_reranker(str(folder), device="cpu")
    assert reranker.calibration is not None and reranker.calibration.per_query_token
    assert reranker.calibration.slope > 0
    p = reranker.relevance_scores("question 7", np.array([4.0, -1.0]))
    assert p is not None and p[0] > 0.9 and p[1] < 0.1

    # a retrained model copied over the folder: its old calibration is refused, not used
    torch.manual_seed(1)
    LateInteractionModel(LateInteractionModel.load(folder).config, tiny_encoder).save(folder)
    with pytest.raises(ValueError, match="fitted to another model's scores"):
        load_reranker(str(folder), device="cpu")


def test_calibrate_fits_a_cross_encoder_on_its_raw_scores(tmp_path: Path) -> None:
    folder = build_tiny_bert(tmp_path / "cross-encoder", labels=1)
    run, qrels = write_run_and_qrels(tmp_path)
    args = ["calibrate", str(folder), "--run", str(run), "--qrels", str(qrels)]
    result = runner.invoke(app, [*args, "--queries", str(tmp_path / "queries.tsv")])
    assert result.exit_code == 0, result.output
    assert "sigmoid(" in result.output and "* score " in result.output
    reranker = load_reranker(str(folder), device="cpu")
    assert reranker.calibration is not None and not reranker.calibration.per_query_token
    # one number per pair: a long query gets the probabilities a short one gets
    scores = np.array([4.0, -1.0])
    short = reranker.relevance_scores("q", scores)
    long = reranker.relevance_scores("a much longer question " * 5, scores)
    assert short is not None and long is not None and short[0] > 0.9 and short[1] < 0.1
    np.testing.assert_array_equal(short, long)


def test_calibrate_refuses_what_it_cannot_fit_and_writes_nothing(
    tmp_path: Path, tiny_encoder
) -> None:
    run, qrels = write_run_and_qrels(tmp_path)
    queries = ["--queries", str(tmp_path / "queries.tsv")]
    not_a_model = runner.invoke(
        app, ["calibrate", str(tmp_path), "--run", str(run), "--qrels", str(qrels), *queries]
    )
    assert not_a_model.exit_code == 2 and "late-interaction" in not_a_model.output
    other_encoder = runner.invoke(
        app, ["calibrate", "maxsim:org/encoder", "--run", str(run), "--qrels", str(qrels), *queries]
    )
    assert other_encoder.exit_code == 2 and "only untrained MaxSim" in other_encoder.output
    folder = lite_folder(tmp_path, tiny_encoder)
    for grade, message in [(3, "both relevant and non-relevant"), (2, "no query ids")]:
        ids = tmp_path / "ids.txt"
        ids.write_text("q1\n" if grade == 3 else "\n")
        result = runner.invoke(
            app,
            [
                "calibrate",
                str(folder),
                "--run",
                str(run),
                "--qrels",
                str(qrels),
                "--min-grade",
                str(grade),
                "--query-ids",
                str(ids),
                *queries,
            ],
        )
        assert result.exit_code == 2 and message in result.output, result.output
    assert not (folder / CALIBRATION_NAME).exists()


def test_eval_reports_how_a_calibrated_rerankers_probabilities_hold(
    tmp_path: Path, tiny_encoder, tiny_corpus: Path
) -> None:
    """``loupe eval`` with a calibrated re-ranker adds the probabilities' quality on the
    judgments to metrics.json, report.md and its summary; without one it adds nothing."""
    import json

    folder = lite_folder(tmp_path, tiny_encoder)
    queries, qrels = tmp_path / "q.tsv", tmp_path / "qrels.trec"
    queries.write_text("q1\tloyal dogs\nq2\tfelines\n")
    qrels.write_text("q1 0 d3 1\nq2 0 d1 2\n")
    candidates = tmp_path / "candidates.trec"
    candidates.write_text(
        "".join(f"{q} Q0 d{d} {d} {1.0 / d} bm25\n" for q in ("q1", "q2") for d in range(1, 5))
    )
    args = ["eval", "--queries", str(queries), "--qrels", str(qrels), "--candidates"]
    args += [str(candidates), "--corpus", str(tiny_corpus), "--reranker", str(folder), "-q"]
    plain = runner.invoke(app, [*args, "--out", str(tmp_path / "plain")])
    assert plain.exit_code == 0, plain.output
    assert "calibration" not in json.loads((tmp_path / "plain" / "metrics.json").read_text())

    ScoreCalibration(slope=2.0, intercept=-1.0, per_query_token=True).save(folder)
    calibrated = runner.invoke(app, [*args, "--out", str(tmp_path / "calibrated")])
    assert calibrated.exit_code == 0, calibrated.output
    assert "relevance_score calibration: mean P" in calibrated.output
    quality = json.loads((tmp_path / "calibrated" / "metrics.json").read_text())["calibration"]
    assert quality["pairs"] == 8 and quality["prevalence"] == 0.25
    assert 0.0 < quality["mean_probability"] < 1.0
    assert (
        "## Calibration of relevance_score" in (tmp_path / "calibrated" / "report.md").read_text()
    )


def test_a_model_folder_it_may_not_write_is_a_clear_error(
    tmp_path: Path, tiny_encoder, monkeypatch
) -> None:
    """An installed package's folder can be read-only (the Docker image runs as a non-root
    user): calibrate says so in one line instead of a traceback."""
    folder = lite_folder(tmp_path, tiny_encoder)
    run, qrels = write_run_and_qrels(tmp_path)

    def refuse(self, folder: Path) -> Path:
        raise PermissionError(13, "Permission denied", str(folder / CALIBRATION_NAME))

    monkeypatch.setattr(ScoreCalibration, "save", refuse)
    args = ["calibrate", str(folder), "--run", str(run), "--qrels", str(qrels)]
    result = runner.invoke(app, [*args, "--queries", str(tmp_path / "queries.tsv")])
    assert result.exit_code == 2 and "Permission denied" in result.output
