"""Latency of re-ranking 100 candidates: from the index's token store vs re-encoding texts.

Usage (an index built with --token-store by the same re-ranker):

    python bench/rerank_latency.py --index runs/scifact-index-lite --queries Q [--split test]
        [--reranker default] [--n 20] [--depth 100]

Prints p50/p90 milliseconds per query for both paths and the token store's bytes per
passage, and writes the same as JSON with --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from index.readers import read_queries
from index.rerank import rerank_hits_many, stored_fraction
from index.searcher import Searcher
from models.registry import load_reranker


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--split")
    parser.add_argument("--reranker", default="default")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    searcher = Searcher.open(args.index)
    reranker = load_reranker(args.reranker)
    queries = list(read_queries(args.queries, args.split).values())[: args.n]
    hits = searcher.search(queries, args.depth)
    stored_ms, encoded_ms, hit_rates = [], [], []
    with torch.inference_mode():
        rerank_hits_many(reranker, searcher.reader, queries[:1], hits[:1])  # warm-up
        for query, row in zip(queries, hits, strict=True):
            hit_rates.append(stored_fraction(reranker, searcher.reader, row))
            started = time.perf_counter()
            rerank_hits_many(reranker, searcher.reader, [query], [row])
            stored_ms.append(1000 * (time.perf_counter() - started))
            started = time.perf_counter()
            reranker.score(query, [h.document.full_text for h in row])
            encoded_ms.append(1000 * (time.perf_counter() - started))
    store = searcher.reader.tokens
    result = {
        "queries": len(queries),
        "candidates": args.depth,
        "token_store_hit_rate": statistics.mean(hit_rates),
        "from_store_ms_p50": statistics.median(stored_ms),
        "from_store_ms_p90": percentile(stored_ms, 0.9),
        "re_encoding_ms_p50": statistics.median(encoded_ms),
        "re_encoding_ms_p90": percentile(encoded_ms, 0.9),
        "token_store_bytes_per_passage": store.bytes_per_document() if store else None,
        "token_store_tokens_per_passage": (store.meta["tokens"] / store.meta["count"])
        if store
        else None,
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
