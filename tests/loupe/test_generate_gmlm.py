"""``loupe generate --gmlm``: the parallel decoder writes training pairs like SoftSRV does."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from loupe.cli import app
from models.gmlm import GenerativeMaskedLM, GmlmConfig

runner = CliRunner()


def test_generate_with_a_gmlm_writes_pairs_and_resumes(
    tmp_path: Path, tiny_corpus: Path, tiny_model_dir: Path
) -> None:
    torch.manual_seed(0)
    model = GenerativeMaskedLM(GmlmConfig(backbone=str(tiny_model_dir), max_target_length=8))
    folder = model.save(tmp_path / "gmlm")
    out = tmp_path / "pairs.jsonl"
    args = ["generate", "--gmlm", str(folder), "--corpus", str(tiny_corpus), "--out", str(out)]
    args += ["--num-queries", "2", "--temperature", "0", "--iterations", "2", "--quiet"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["doc_id"] for r in rows} == {"d1", "d2", "d3", "d4"}
    assert all(r["query"] and r["generator"] == "gmlm-T2" for r in rows)
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert len(out.read_text().splitlines()) == len(rows), "a rerun skips passages already done"


def test_generate_needs_exactly_one_generator(tmp_path: Path, tiny_corpus: Path) -> None:
    args = ["generate", "--corpus", str(tiny_corpus), "--out", str(tmp_path / "p.jsonl")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "exactly one of" in result.output
