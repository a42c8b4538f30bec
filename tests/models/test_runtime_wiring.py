"""The runtime setting where the encoders run: the service (settings, /v1/models), ``loupe
index build --runtime`` and ``loupe eval --runtime``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from typer.testing import CliRunner

from loupe.cli import app
from service.app import create_app
from service.settings import ServiceSettings
from tests.service.helpers import wait_ready

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

runner = CliRunner()


def test_settings_read_the_runtime_from_the_environment(monkeypatch) -> None:
    assert ServiceSettings().runtime == "auto"
    monkeypatch.setenv("LOUPE_RUNTIME", "onnx")
    assert ServiceSettings().runtime == "onnx"
    monkeypatch.setenv("LOUPE_RUNTIME", "tensorrt")
    with pytest.raises(ValidationError):
        ServiceSettings()


def test_service_runs_onnx_and_shows_it(tmp_path: Path, tiny_model_dir) -> None:
    settings = ServiceSettings(
        index=tmp_path / "index",
        encoder=str(tiny_model_dir),
        reranker=str(tiny_model_dir),
        device="cpu",
        runtime="onnx",
        onnx_cache=tmp_path / "cache",
    )
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        cards = {card["role"]: card for card in client.get("/v1/models").json()["data"]}
        for role in ("encoder", "reranker"):
            assert cards[role]["runtime"]["runtime"] == "onnx", cards
            assert cards[role]["runtime"]["provider"] == "CPUExecutionProvider"
        answer = client.post("/v1/rerank", json={"query": "cats", "documents": ["a", "b cats"]})
        assert answer.status_code == 200, answer.text
    assert any((tmp_path / "cache" / "onnx").iterdir())


def test_serve_help_names_the_runtime_option() -> None:
    result = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--runtime" in result.output and "LOUPE_RUNTIME" in result.output


def test_index_build_and_eval_take_a_runtime(
    tmp_path: Path, tiny_corpus: Path, tiny_model_dir, monkeypatch
) -> None:
    monkeypatch.setenv("LOUPE_CACHE_DIR", str(tmp_path / "cache"))
    index = tmp_path / "index"
    build = ["index", "build", "--corpus", str(tiny_corpus), "--out", str(index)]
    build += ["--model", str(tiny_model_dir), "--runtime", "onnx", "-q"]
    result = runner.invoke(app, build)
    assert result.exit_code == 0, result.output
    assert any((tmp_path / "cache" / "onnx").iterdir())
    queries = tmp_path / "queries.tsv"
    queries.write_text("q1\tDogs are loyal companions and good pets.\n")
    qrels = tmp_path / "qrels.trec"
    qrels.write_text("q1 0 d3 1\n")
    out = tmp_path / "eval"
    evaluate = ["eval", "--queries", str(queries), "--qrels", str(qrels), "--index", str(index)]
    evaluate += ["--reranker", str(tiny_model_dir), "--out", str(out), "-q"]
    result = runner.invoke(app, [*evaluate, "--runtime", "onnx"])
    assert result.exit_code == 0, result.output
    assert "runtime " in result.output and "onnx (CPUExecutionProvider)" in result.output
    runtimes = json.loads((out / "metrics.json").read_text())["runtimes"]
    assert [r["runtime"] for r in runtimes] == ["onnx", "onnx"]  # re-ranker, query encoder
    result = runner.invoke(app, [*evaluate, "--runtime", "tensorrt"])
    assert result.exit_code != 0
