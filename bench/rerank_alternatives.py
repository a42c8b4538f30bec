"""Re-ranking 100 candidates per query: Loupe's paths against what users would pick instead,
on the same backbone size, in one run on one machine (issue 7).

    python -m bench.rerank_alternatives [--queries 43] [--out runs/bench/rerank_alternatives.json]
    python -m bench.rerank_alternatives --quick      # tiny random models, synthetic texts

Methods (all score each query's candidates; documents are encoded 32 at a time):

- ``loupe token store``: the shipped re-ranker over token matrices read from a token store
  (written once, untimed, as ``loupe index build --token-store`` does): the query is encoded,
  the candidates' matrices are gathered and scored. No transformer pass over documents.
- ``loupe re-encode torch | onnx | onnx int8``: the same re-ranker encoding the candidates'
  texts on every call, with the encoder on PyTorch, ONNX Runtime fp32, or ONNX Runtime with
  dynamically quantised int8 weights (``models.runtime``).
- ``cross-encoder (untrained head)``: sentence-transformers ``CrossEncoder`` on the packaged
  all-MiniLM-L6-v2 (same 6-layer, 384-wide backbone), query and passage together, up to
  ``q_len + d_len`` tokens. No trained MiniLM-L6 cross-encoder ships offline, so its
  classification head is random: its latency is real, its quality is not reported.
- PyLate ColBERT: not here. ``pip install pylate`` (1.6.0) pulls a CUDA build of torch
  2.11 and the CUDA toolkit (through fast-plaid) and downgrades transformers and
  sentence-transformers, so it runs in its own environment: ``bench.pylate_rerank``, same
  protocol.

Reported per method: p50/p99 milliseconds per query at batch 1 (one query and its
candidates per call), throughput (queries/s) at the best of several batch sizes (queries per
call), and nDCG@10 on DL19 BM25 top-100 where the method has trained weights. ``--quick``
uses tiny random models and synthetic texts (seconds; checks the script, not a result).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import (
    RerankTask,
    dl19_task,
    latency_summary,
    machine,
    machine_line,
    markdown_table,
    ndcg_at_10,
    synthetic_task,
    timed_call,
    timed_ms,
    tiny_bert,
    tiny_late_model,
    write_json,
)
from index.builder import IndexBuildConfig
from index.token_store import TokenStore, write_token_store
from models.encoder import TokenRunner
from models.late_interaction import LateInteractionModel
from models.late_reranker import LateInteractionReranker
from models.onnx_backbone import OnnxTokenRunner, quantize_int8
from models.runtime import RuntimeConfig, apply_runtime

log = logging.getLogger(__name__)

ScoreMany = Callable[[list[str], list[list[str]]], list[np.ndarray]]
PYLATE_NOTE = (
    "measured by bench.pylate_rerank in its own environment (pylate 1.6.0 pins CUDA torch 2.11 "
    "and fast-plaid, and does not install beside Loupe's CPU torch)"
)


@dataclass
class Method:
    """A re-ranking method: ``score_many(queries, candidate texts) -> scores per query``."""

    name: str
    score_many: ScoreMany
    trained: bool
    note: str = ""


def token_store_method(
    reranker: LateInteractionReranker, task: RerankTask, folder: Path, trained: bool
) -> Method:
    """Writes every candidate's matrix to a token store (untimed) in the dtype
    ``loupe index build --token-store`` uses by default, then scores from it."""
    ids = sorted(task.texts)
    keys = {doc_id: i for i, doc_id in enumerate(ids)}
    by_text = {task.texts[d]: keys[d] for d in ids}
    matrices = reranker.model.document_matrices([task.texts[d] for d in ids])
    store: TokenStore = write_token_store(
        folder, range(len(ids)), matrices, reranker.model.dim, dtype=IndexBuildConfig.token_dtype
    )

    def score_many(queries: list[str], docs: list[list[str]]) -> list[np.ndarray]:
        gathered = [store.get([by_text[t] for t in row]) for row in docs]
        return reranker.score_stored_many(
            queries, [[m for m in row if m is not None] for row in gathered]
        )

    note = f"{store.bytes_per_document():.0f} bytes/passage in the store"
    return Method("loupe token store", score_many, trained, note)


def reencode_methods(model: LateInteractionModel, cache_dir: Path, trained: bool) -> list[Method]:
    """The re-ranker re-encoding texts with its encoder on torch, ONNX fp32 and ONNX int8."""
    reranker = LateInteractionReranker(model)
    encoder = model.encoder
    onnx_choice = apply_runtime(encoder, RuntimeConfig("onnx", cache_dir=cache_dir))
    onnx_runner = encoder.runner
    if onnx_choice.graph is None or onnx_runner is None:
        raise RuntimeError("ONNX Runtime did not take the encoder")
    int8_runner = OnnxTokenRunner(quantize_int8(Path(onnx_choice.graph)), encoder.device)
    encoder.runner = None

    def on(runner: TokenRunner | None) -> ScoreMany:
        def score_many(queries: list[str], docs: list[list[str]]) -> list[np.ndarray]:
            encoder.runner = runner
            try:
                return reranker.score_many(queries, docs)
            finally:
                encoder.runner = None

        return score_many

    return [
        Method("loupe re-encode torch", on(None), trained),
        Method("loupe re-encode onnx", on(onnx_runner), trained, onnx_runner.provider),
        Method("loupe re-encode onnx int8", on(int8_runner), trained, "dynamic int8 weights"),
    ]


def cross_encoder_method(backbone: Path, max_length: int) -> Method | None:
    """sentence-transformers CrossEncoder on ``backbone`` (random head), or None if absent."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from sentence_transformers import CrossEncoder
    except ImportError:
        log.warning("sentence-transformers is not installed: no cross-encoder row")
        return None
    from transformers import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    model = CrossEncoder(str(backbone), num_labels=1, max_length=max_length, device="cpu")

    def score_many(queries: list[str], docs: list[list[str]]) -> list[np.ndarray]:
        pairs = [(q, d) for q, row in zip(queries, docs, strict=True) for d in row]
        flat = np.asarray(model.predict(pairs, batch_size=32, show_progress_bar=False))
        out, start = [], 0
        for row in docs:
            out.append(flat[start : start + len(row)])
            start += len(row)
        return out

    return Method(
        "cross-encoder (untrained head)",
        score_many,
        trained=False,
        note=f"sentence-transformers, max_length {max_length}; latency only",
    )


def measure(
    method: Method, task: RerankTask, batch_sizes: Sequence[int], throughput_queries: int
) -> dict[str, Any]:
    """Latency at batch 1 over every query (keeping the scores), then throughput per batch."""
    qids = list(task.queries)

    def run(group: Sequence[str]) -> list[np.ndarray]:
        return method.score_many([task.queries[q] for q in group], [task.docs(q) for q in group])

    method.score_many([task.queries[qids[0]]], [task.docs(qids[0])[:8]])  # warm-up
    scores: dict[str, np.ndarray] = {}
    latencies = []
    for q in qids:
        (scores[q],), elapsed = timed_call(partial(run, [q]))
        latencies.append(elapsed)
    subset = qids[:throughput_queries]
    throughput: dict[str, float] = {}
    for size in batch_sizes:
        groups = [subset[i : i + size] for i in range(0, len(subset), size)]
        elapsed_ms = sum(timed_ms(partial(run, g)) for g in groups)
        throughput[str(size)] = 1000 * len(subset) / elapsed_ms
    best = max(throughput, key=lambda k: throughput[k])
    return {
        "method": method.name,
        "latency_batch1": latency_summary(latencies),
        "throughput_qps": throughput,
        "best_batch": int(best),
        "best_qps": throughput[best],
        "ndcg10": ndcg_at_10(task, scores) if method.trained else None,
        "trained": method.trained,
        "note": method.note,
        "scores": {q: s.tolist() for q, s in scores.items()},
    }


def report_markdown(payload: dict[str, Any]) -> str:
    """The result table: one row per method, with the ratio to the token-store path."""
    rows = payload["results"]
    store = next((r for r in rows if r["method"] == "loupe token store"), None)
    table = []
    for r in rows:
        p50 = r["latency_batch1"]["p50_ms"]
        ratio = p50 / store["latency_batch1"]["p50_ms"] if store else None
        quality = r["ndcg10"] if r["ndcg10"] is not None else "not reported (untrained)"
        table.append(
            [
                r["method"],
                p50,
                r["latency_batch1"]["p99_ms"],
                ratio,
                r["best_qps"],
                r["best_batch"],
                quality,
                r.get("top10_same_as_torch"),
                r["note"],
            ]
        )
    headers = [
        "method",
        "p50 ms (batch 1)",
        "p99 ms",
        "x token store p50",
        "best queries/s",
        "at batch",
        "nDCG@10",
        "top-10 positions as torch",
        "note",
    ]
    lines = [
        f"{payload['task']}: {payload['queries']} queries x {payload['candidates']} candidates; "
        f"{machine_line(payload['machine'])}.",
        "",
        markdown_table(headers, table),
        "",
        f"PyLate ColBERT: {payload['pylate']}.",
    ]
    if payload.get("quick"):
        lines.insert(0, "**Quick mode: tiny random models and synthetic texts; not a result.**\n")
    return "\n".join(lines)


def plot_quality_latency(payload: dict[str, Any], path: Path) -> Path:
    """nDCG@10 against p50 latency at batch 1 (log scale), one point per method; methods
    without a quality figure (the untrained cross-encoder) are a vertical line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    measured = [r["ndcg10"] for r in payload["results"] if r["ndcg10"] is not None]
    if measured:
        ax.set_ylim(min(measured) - 0.05, max(measured) + 0.05)
    for k, r in enumerate(payload["results"]):
        ms = r["latency_batch1"]["p50_ms"]
        if r["ndcg10"] is None:
            ax.axvline(ms, linestyle="--", color="grey")
            ax.annotate(f"{r['method']}\n(quality not measured)", (ms, 0.02), fontsize=8,
                        xycoords=("data", "axes fraction"), rotation=90, ha="right")  # fmt: skip
            continue
        ax.plot(ms, r["ndcg10"], "o")
        ax.annotate(r["method"], (ms, r["ndcg10"]), textcoords="offset points",
                    xytext=(5, 6 if k % 2 else -12), fontsize=8)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("p50 ms per query, batch 1 (log)")
    ax.set_ylabel(f"nDCG@10 ({payload['task']})")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(
        "Quality against latency" + (" (quick: tiny random models)" if payload["quick"] else "")
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny random models, synthetic data")
    parser.add_argument("--queries", type=int, default=None, help="DL19 queries (default: all 43)")
    parser.add_argument("--throughput-queries", type=int, default=16)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--no-cross-encoder", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--plot", type=Path, help="PNG of quality against latency")
    args = parser.parse_args(argv)
    from models.backbone import packaged_minilm_path
    from models.registry import resolve_late_interaction

    with tempfile.TemporaryDirectory(prefix="loupe-bench-") as tmp:
        work = Path(tmp)
        if args.quick:
            task = synthetic_task(n_queries=3, depth=20, words=30)
            folder, ce_backbone, trained = (
                tiny_late_model(work / "models"),
                tiny_bert(work / "ce"),
                False,
            )
            batch_sizes, throughput_queries = [1, 2], 3
        else:
            task = dl19_task(args.queries)
            folder, ce_backbone, trained = (
                resolve_late_interaction("default"),
                packaged_minilm_path(),
                True,
            )
            batch_sizes, throughput_queries = args.batch_sizes, args.throughput_queries
        model = LateInteractionModel.load(folder, device="cpu")
        reranker = LateInteractionReranker(model)
        methods = [token_store_method(reranker, task, work / "tokens", trained)]
        methods += reencode_methods(model, work / "onnx-cache", trained)
        if not args.no_cross_encoder:
            ce = cross_encoder_method(ce_backbone, model.config.q_len + model.config.d_len)
            if ce is not None:
                methods.append(ce)
        results = []
        for method in methods:
            log.info("measuring %s", method.name)
            results.append(measure(method, task, batch_sizes, throughput_queries))
    # re-encoding on torch: what the other paths and runtimes should rank alike
    reference = next(r for r in results if r["method"] == "loupe re-encode torch")["scores"]
    for r in results:
        r["top10_same_as_torch"] = float(
            np.mean(
                [
                    np.mean(
                        np.argsort(-np.asarray(r["scores"][q]))[:10]
                        == np.argsort(-np.asarray(reference[q]))[:10]
                    )
                    for q in reference
                ]
            )
        )
        del r["scores"]
    depth = max(len(c) for c in task.candidates.values())
    payload = {
        "benchmark": "rerank_alternatives",
        "quick": args.quick,
        "task": task.name,
        "queries": len(task.queries),
        "candidates": depth,
        "machine": machine(),
        "pylate": PYLATE_NOTE,
        "results": results,
    }
    print(report_markdown(payload))
    write_json(args.out, payload)
    if args.plot:
        plot_quality_latency(payload, args.plot)
    return payload


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    main()
