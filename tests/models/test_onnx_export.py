from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from loupe.cli import app
from models.encoder import EncoderConfig, TextEncoder
from models.late_interaction import LateInteractionConfig, LateInteractionModel
from models.lite import ScorerConfig
from models.onnx_export import export_onnx

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def test_encoder_and_reranker_export_match_pytorch(tmp_path: Path, tiny_model_dir) -> None:
    encoder = TextEncoder(EncoderConfig(model=str(tiny_model_dir), device="cpu", max_length=32))
    config = LateInteractionConfig(
        dim=8, q_len=8, d_len=32, scorer=ScorerConfig(kind="sorted", q_len=8, d_len=32, top_k=4)
    )
    folder = LateInteractionModel(config, encoder).save(tmp_path / "lite")
    reports = export_onnx(str(folder), tmp_path / "onnx", int8=True)
    by_name = {r.graph: r for r in reports}
    assert by_name["encoder.onnx"].max_abs_difference < 1e-4
    full = by_name["late_tokens.onnx + scorer.onnx"]
    assert full.max_abs_difference < 1e-3 and full.spearman == pytest.approx(1.0)
    assert "encoder.int8.onnx" in by_name  # quantised: reported, not held to fp32 parity
    assert (tmp_path / "onnx" / "onnx_config.json").is_file()


def test_cli_exports_an_encoder(tmp_path: Path, tiny_model_dir) -> None:
    result = CliRunner().invoke(
        app, ["export", "onnx", str(tiny_model_dir), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "encoder.onnx: max abs difference" in result.output
