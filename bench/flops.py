"""The physical limit: achieved FLOP/s of re-ranking against a plain fp32 matrix multiply
measured in the same run (issue 7).

    python -m bench.flops [--queries 10] [--mm-size 4096] [--out runs/bench/flops.json]
    python -m bench.flops --quick      # tiny random model, synthetic texts

FLOPs are counted from the shapes that actually run (padded, length-sorted batches of 32, as
``LateInteractionModel.document_matrices`` forms them), one multiply-add = 2 FLOPs:

- encoder, per layer, for a batch of B sequences padded to L tokens: ``B*L*(8*H^2 + 4*H*I)``
  for the Q, K, V, output and feed-forward projections plus ``4*B*L^2*H`` for attention
  scores and the weighted sum (H hidden width, I feed-forward width); the pooler, when the
  backbone has one, ``2*B*H^2``. Softmax, LayerNorm and GELU are left out (a few percent).
- late interaction: the projection ``2*B*L*H*dim`` and the similarity matrix of MaxSim
  ``2*q*T*dim`` per candidate (T: the candidates' padded length).

The peak is ``2*n^3`` FLOPs per ``torch.mm`` of two ``n x n`` fp32 matrices (median of
timed calls) on the same threads. ``tests/bench`` checks the linear terms against
``torch.utils.flop_counter`` (which does not count CPU attention kernels, hence the formula).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from bench.harness import (
    dl19_task,
    machine,
    machine_line,
    markdown_table,
    synthetic_task,
    timed_ms,
    tiny_late_model,
    write_json,
)
from models.encoder import length_sorted_batches
from models.late_interaction import LateInteractionModel
from models.late_reranker import LateInteractionReranker
from models.runtime import RuntimeConfig, apply_runtime


@dataclass(frozen=True)
class EncoderShape:
    """What the FLOP count needs of a BERT-style encoder."""

    layers: int
    hidden: int
    intermediate: int
    pooler: bool

    @classmethod
    def of(cls, model: torch.nn.Module) -> EncoderShape:
        config: Any = model.config
        return cls(
            layers=int(config.num_hidden_layers),
            hidden=int(config.hidden_size),
            intermediate=int(config.intermediate_size),
            pooler=getattr(model, "pooler", None) is not None,
        )


def encoder_linear_flops(shape: EncoderShape, batch: int, length: int) -> int:
    """Projection and feed-forward FLOPs (and the pooler's) of one padded batch.

    >>> encoder_linear_flops(EncoderShape(1, 2, 4, False), batch=1, length=1)
    64
    """
    h, i = shape.hidden, shape.intermediate
    per_layer = batch * length * (8 * h * h + 4 * h * i)
    return shape.layers * per_layer + (2 * batch * h * h if shape.pooler else 0)


def encoder_flops(shape: EncoderShape, batch: int, length: int) -> int:
    """All counted FLOPs of one padded batch: linear terms plus attention."""
    attention = shape.layers * 4 * batch * length * length * shape.hidden
    return encoder_linear_flops(shape, batch, length) + attention


def padded_batches(
    model: LateInteractionModel, texts: Sequence[str], max_length: int, batch_size: int = 32
) -> list[tuple[int, int]]:
    """``(batch, padded length)`` of each batch the re-ranker forms for ``texts``."""
    tokenizer = model.encoder.backbone.tokenizer
    lengths = [
        len(ids)
        for ids in tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    ]
    return [
        (len(ids), max(lengths[i] for i in ids))
        for ids in length_sorted_batches([len(t) for t in texts], batch_size)
    ]


def rerank_flops(model: LateInteractionModel, query: str, texts: Sequence[str]) -> dict[str, int]:
    """FLOPs of re-ranking ``texts`` for ``query``: encoding them, encoding the query, and
    scoring (projection + MaxSim similarity)."""
    shape = EncoderShape.of(model.encoder.backbone.model)
    dim, hidden = model.dim, shape.hidden
    docs = padded_batches(model, texts, model.config.d_len)
    ((_, q_len),) = padded_batches(model, [query], model.config.q_len)
    doc_tokens = max(length for _, length in docs)
    return {
        "encode_documents": sum(encoder_flops(shape, b, n) for b, n in docs),
        "project_documents": sum(2 * b * n * hidden * dim for b, n in docs),
        "encode_query": encoder_flops(shape, 1, q_len) + 2 * q_len * hidden * dim,
        "score": 2 * q_len * doc_tokens * dim * len(texts),
    }


def matmul_flops_per_second(n: int, repeats: int) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    seconds = statistics.median(timed_ms(lambda: torch.mm(a, b)) for _ in range(repeats)) / 1000
    return 2 * n**3 / seconds


def measure(
    reranker: LateInteractionReranker,
    queries: Sequence[str],
    candidates: Sequence[Sequence[str]],
    cache_dir: Path,
) -> list[dict[str, Any]]:
    """Per path: FLOPs per query, median ms per query and the achieved FLOP/s."""
    model = reranker.model
    counts = [rerank_flops(model, q, docs) for q, docs in zip(queries, candidates, strict=True)]
    matrices = [model.document_matrices(list(docs)) for docs in candidates]
    paths = {
        "token store (encode query, score)": (
            lambda i: reranker.score_stored(queries[i], matrices[i]),
            ("encode_query", "score"),
        ),
        "re-encode torch": (
            lambda i: reranker.score(queries[i], candidates[i]),
            ("encode_documents", "project_documents", "encode_query", "score"),
        ),
    }
    rows = []
    reranker.score(queries[0], list(candidates[0])[:8])  # warm-up
    for name, (call, parts) in paths.items():
        times = _time_each(call, len(queries))
        flops = [sum(c[p] for p in parts) for c in counts]
        rows.append(_row(name, flops, times))
    apply_runtime(model.encoder, RuntimeConfig("onnx", cache_dir=cache_dir))
    call, parts = paths["re-encode torch"]
    call(0)  # warm-up
    times = _time_each(call, len(queries))
    rows.append(_row("re-encode onnx", [sum(c[p] for p in parts) for c in counts], times))
    model.encoder.runner = None
    return rows


def _time_each(call: Callable[[int], object], n: int) -> list[float]:
    """Milliseconds of ``call(i)`` for each query ``i``."""
    return [timed_ms(partial(call, i)) for i in range(n)]


def _row(name: str, flops: Sequence[int], times_ms: Sequence[float]) -> dict[str, Any]:
    return {
        "path": name,
        "gflop_per_query": statistics.median(flops) / 1e9,
        "ms_per_query": statistics.median(times_ms),
        "gflops": sum(flops) / (sum(times_ms) / 1000) / 1e9,
    }


def report_markdown(payload: dict[str, Any]) -> str:
    peak = payload["matmul_gflops"]
    headers = ["path", "GFLOP / query", "ms / query (median)", "GFLOP/s", "share of torch.mm"]
    rows = [
        [r["path"], r["gflop_per_query"], r["ms_per_query"], r["gflops"], r["gflops"] / peak]
        for r in payload["results"]
    ]
    rows.append([f"torch.mm {payload['mm_size']}x{payload['mm_size']} fp32", None, None, peak, 1.0])
    lines = [
        f"{payload['task']}, {payload['queries']} queries x {payload['candidates']} candidates; "
        f"{machine_line(payload['machine'])}.",
        "",
        markdown_table(headers, rows),
    ]
    if payload.get("quick"):
        lines.insert(0, "**Quick mode: tiny random model, small matrices; not a result.**\n")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--mm-size", type=int, default=4096)
    parser.add_argument("--mm-repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from models.registry import resolve_late_interaction

    with tempfile.TemporaryDirectory(prefix="loupe-flops-") as tmp:
        work = Path(tmp)
        if args.quick:
            task = synthetic_task(n_queries=3, depth=20, words=30)
            folder, mm_size = tiny_late_model(work / "model"), 256
        else:
            task = dl19_task(args.queries)
            folder, mm_size = resolve_late_interaction("default"), args.mm_size
        reranker = LateInteractionReranker(LateInteractionModel.load(folder, device="cpu"))
        qids = list(task.queries)
        peak = matmul_flops_per_second(mm_size, args.mm_repeats)
        results = measure(
            reranker, [task.queries[q] for q in qids], [task.docs(q) for q in qids], work
        )
        peak_after = matmul_flops_per_second(mm_size, args.mm_repeats)
    payload = {
        "benchmark": "flops",
        "quick": args.quick,
        "task": task.name,
        "queries": len(qids),
        "candidates": max(len(c) for c in task.candidates.values()),
        "mm_size": mm_size,
        "matmul_gflops": max(peak, peak_after) / 1e9,
        "matmul_gflops_before_after": [peak / 1e9, peak_after / 1e9],
        "machine": machine(),
        "results": results,
    }
    print(report_markdown(payload))
    write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
