"""First-stage FAISS indexes side by side: build time, memory, queries per second and
recall@10 against exact search (issue 7).

    python bench/first_stage.py [--sizes 100000 1000000] [--quick] [--out FILE]

Vectors: by default synthetic, 384-d, drawn around 1,000 random cluster centres and
normalised (clustered like real embeddings, unlike uniform noise, which is the worst case
for IVF); queries are perturbed copies of held-out points. --quick: 20k vectors.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import faiss
import numpy as np

from index.faiss_index import FaissIndex

FACTORIES = ["Flat", "HNSW32", "IVF1024,Flat", "IVF1024,PQ48"]


def clustered(n: int, dim: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    x = centres[rng.integers(0, len(centres), n)] + 0.35 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out")
    args = parser.parse_args()
    sizes = [20_000] if args.quick else args.sizes
    rng = np.random.default_rng(args.seed)
    centres = rng.standard_normal((1000, args.dim)).astype(np.float32)
    rows = []
    for n in sizes:
        base = clustered(n, args.dim, rng, centres)
        queries = clustered(args.queries, args.dim, rng, centres)
        exact = faiss.IndexFlatIP(args.dim)
        exact.add(base)
        _, truth = exact.search(queries, 10)
        for factory in FACTORIES:
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            started = time.perf_counter()
            index = FaissIndex.create(args.dim, factory, use_gpu=False)
            index.train(base)
            index.add(np.arange(n), base)
            build = time.perf_counter() - started
            index.set_search_params(nprobe=16, ef_search=64)
            started = time.perf_counter()
            _, found = index.search(queries, 10)
            qps = len(queries) / (time.perf_counter() - started)
            recall = float(
                np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
            )
            size = index.serialized_bytes()
            rows.append(
                {
                    "vectors": n,
                    "factory": factory,
                    "build_s": build,
                    "index_mb": size / 2**20,
                    "qps": qps,
                    "recall@10": recall,
                    "peak_rss_growth_mb": (
                        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
                    )
                    / 1024,
                }
            )
            r = rows[-1]
            print(
                f"| {n:,} | {factory} | {r['build_s']:.1f} | {r['index_mb']:.0f} | "
                f"{r['qps']:,.0f} | {r['recall@10']:.3f} |",
                flush=True,
            )
    if args.out:
        with Path(args.out).open("w") as handle:
            json.dump(
                {
                    "rows": rows,
                    "dim": args.dim,
                    "queries": args.queries,
                    "nprobe": 16,
                    "efSearch": 64,
                    "seed": args.seed,
                },
                handle,
                indent=2,
            )


if __name__ == "__main__":
    print("| vectors | index | build s | size MB | queries/s (batch 1,000) | recall@10 |")
    print("|---|---|---|---|---|---|")
    main()
