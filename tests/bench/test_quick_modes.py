"""The issue-7 benchmark scripts: their quick modes run (tiny models built in-process), their
FLOP count agrees with torch's counter, and bench/run_all.py rebuilds the report's blocks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from bench import flops, rerank_alternatives, rerank_scaling, run_all
from bench.harness import RerankTask, ndcg_at_10

pytest.importorskip("onnxruntime")
REPORT = Path(__file__).resolve().parents[2] / "reports" / "performance.md"


def test_rerank_alternatives_quick(tmp_path: Path) -> None:
    out = tmp_path / "alternatives.json"
    payload = rerank_alternatives.main(["--quick", "--out", str(out)])
    assert json.loads(out.read_text())["benchmark"] == "rerank_alternatives"
    rows = {r["method"]: r for r in payload["results"]}
    assert {"loupe token store", "loupe re-encode torch", "loupe re-encode onnx"} <= set(rows)
    assert "loupe re-encode onnx int8" in rows
    for row in rows.values():
        assert row["latency_batch1"]["p50_ms"] > 0 and row["best_qps"] > 0
        assert row["ndcg10"] is None  # quick mode: nothing is trained
    assert rows["loupe re-encode onnx"]["top10_same_as_torch"] >= 0.9
    assert rows["loupe token store"]["top10_same_as_torch"] >= 0.9
    assert "PyLate" in rerank_alternatives.report_markdown(payload)


def test_rerank_scaling_quick_writes_a_plot(tmp_path: Path) -> None:
    out = tmp_path / "scaling.json"
    payload = rerank_scaling.main(["--quick", "--out", str(out)])
    assert [r["candidates"] for r in payload["by_candidates"]] == [10, 30, 100]
    assert [r["tokens"] for r in payload["by_length"]] == [32, 64, 128]
    assert all(r["token_store_ms"] > 0 and r["re_encode_ms"] > 0 for r in payload["by_candidates"])
    assert out.with_suffix(".png").stat().st_size > 1000
    assert torch.is_grad_enabled()


def test_flops_quick(tmp_path: Path) -> None:
    payload = flops.main(["--quick", "--out", str(tmp_path / "flops.json")])
    paths = {r["path"]: r for r in payload["results"]}
    store = paths["token store (encode query, score)"]
    assert paths["re-encode torch"]["gflop_per_query"] > store["gflop_per_query"] > 0
    assert payload["matmul_gflops"] > 0
    assert torch.is_grad_enabled()  # the scripts leave global autograd state alone


@pytest.mark.slow
def test_service_memory_quick(tmp_path: Path, monkeypatch) -> None:
    from bench import service_memory

    monkeypatch.setenv("LOUPE_CACHE_DIR", str(tmp_path / "cache"))
    payload = service_memory.main(["--quick", "--out", str(tmp_path / "memory.json")])
    assert payload["passages"] == 300
    assert payload["service"]["peak_after_requests_mib"] >= payload["service"]["rss_ready_mib"]
    assert payload["bytes"]["token store"] > 0 and payload["bytes"]["vectors (FAISS)"] > 0


def test_flop_formula_matches_torch_counter_for_linear_layers(tiny_encoder) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    batch = tiny_encoder.tokenize(["one two three", "a somewhat longer text than the first"])
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        tiny_encoder.forward_tokens(batch)
    shape = flops.EncoderShape.of(tiny_encoder.backbone.model)
    b, n = batch["input_ids"].shape
    assert counter.get_total_flops() == flops.encoder_linear_flops(shape, b, n)
    assert flops.encoder_flops(shape, b, n) > flops.encoder_linear_flops(shape, b, n)


def test_ndcg_at_10_orders_candidates_by_score() -> None:
    task = RerankTask("t", {"q": "q"}, {"q": ["a", "b", "c"]}, {}, {"q": {"c": 1}})
    assert ndcg_at_10(task, {"q": torch.tensor([0.0, 0.1, 0.9]).numpy()}) == pytest.approx(1.0)
    assert ndcg_at_10(task, {"q": torch.tensor([0.9, 0.1, 0.0]).numpy()}) == pytest.approx(0.5)


def test_run_all_fills_blocks_from_json_and_keeps_the_rest(tmp_path: Path) -> None:
    report = tmp_path / "performance.md"
    shutil.copy(REPORT, report)
    json_dir = tmp_path / "json"
    json_dir.mkdir()
    run_all.main(["--report-only", "--json-dir", str(json_dir), "--report", str(report)])
    text = report.read_text()
    assert text.count(run_all.PENDING) == len(run_all.BENCHES)
    flops.main(["--quick", "--out", str(json_dir / "flops.json")])
    filled = run_all.regenerate(report, json_dir)
    assert filled == ["flops"]
    rebuilt = report.read_text()
    assert rebuilt.count(run_all.PENDING) == len(run_all.BENCHES) - 1
    assert "torch.mm 256x256 fp32" in rebuilt and "Quick mode" in rebuilt
    outside = text.split("<!-- bench:flops -->")[0]
    assert rebuilt.startswith(outside)  # hand-written sections are kept
    assert run_all.regenerate(report, json_dir) == ["flops"]
    assert report.read_text() == rebuilt  # idempotent


def test_run_all_renders_the_older_benchmarks_json(tmp_path: Path) -> None:
    first_stage = {
        "rows": [
            {"vectors": 20000, "factory": "Flat", "build_s": 0.1, "index_mb": 29.3,
             "qps": 1000.0, "recall@10": 1.0}
        ],
        "dim": 384, "queries": 1000, "nprobe": 16, "efSearch": 64, "seed": 0,
    }  # fmt: skip
    assert "| 20,000 | Flat |" in run_all.renderer("first_stage")(first_stage)
    runtimes = {
        "queries": ["q1"],
        "threads": 2,
        "results": {"pytorch fp32": {"p50_ms": 1.0, "max_ms": 2.0, "top10_same_position": 1.0}},
    }
    assert "| pytorch fp32 | 1 | 2 | 1 |" in run_all.renderer("rerank_runtimes")(runtimes)


def test_bench_doctests() -> None:
    import doctest

    from bench import harness

    for module in (harness, flops):
        assert doctest.testmod(module).failed == 0


def test_search_profile_quick_attributes_time_to_every_stage(tmp_path: Path) -> None:
    from bench import search_profile

    payload = search_profile.main(["--quick", "--out", str(tmp_path / "profile.json")])
    stages = payload["stages_ms"]
    # the re-ranker shares the encoder, so its query matrix comes from the first stage's pass
    assert stages.pop("re-ranker query encode (tokenise, forward)") == 0
    # every other stage's function was found on the profiled call stack (a rename zeroes it)
    assert all(ms > 0 for ms in stages.values()), stages
    assert 0 < payload["of_which_tokenise_ms"] < payload["engine_ms_per_request"]
    assert payload["http_p50_ms"] > 0
    assert "FAISS search" in search_profile.report_markdown(payload)
