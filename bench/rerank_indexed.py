"""``/v1/rerank`` of documents the index holds: scored from their stored token matrices
instead of being encoded (reports/performance.md, "What avoids encoding altogether").

    LOUPE_DATA_DIR=../shared/data PYTHONPATH=. python bench/rerank_indexed.py \\
        --index runs/scifact-index-maxp [--requests 5]

The index (SciFact, built with ``--token-store`` for the shipped re-ranker) is copied to a
temporary folder, as the service's first writable open hashes its documents' texts. The app
runs in process (FastAPI's TestClient, the shipped re-ranker, PyTorch on the CPU) with the
document cache off, so that every request shows its own cost. Each request re-ranks 100
SciFact passages for another SciFact test query: ``indexed`` sends their full texts as the
index holds them; ``not indexed`` the same texts with a trailing space, which the index does
not hold (the tokenizer reads them alike), so they are encoded. Prints p50 and mean ms, and
how far apart the two arms' scores are.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from fastapi.testclient import TestClient

from evaluation.datasets import data_root
from index.readers import read_corpus, read_queries
from service.app import create_app
from service.settings import ServiceSettings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--index", type=Path, default=Path("runs/scifact-index-maxp"))
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    scifact = data_root() / "beir-scifact"
    texts = [d.full_text for d in read_corpus(scifact)]
    queries = list(read_queries(scifact / "queries.jsonl", split="test").values())
    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp()) / "index"
    shutil.copytree(args.index, folder)
    settings = ServiceSettings(index=folder, device="cpu", runtime="torch", document_cache_mb=0)
    times: dict[str, list[float]] = {"indexed": [], "not indexed": []}
    differences: list[float] = []
    try:
        with TestClient(create_app(settings)) as client:
            while not client.get("/ready").json()["ready"]:
                time.sleep(0.2)
            for request in range(args.requests + 1):  # the first warms up, uncounted
                docs = rng.sample(texts, args.docs)
                query = queries[request % len(queries)]
                scores = {}
                for arm, sent in (("indexed", docs), ("not indexed", [d + " " for d in docs])):
                    started = time.perf_counter()
                    answer = client.post("/v1/rerank", json={"query": query, "documents": sent})
                    elapsed = 1000 * (time.perf_counter() - started)
                    answer.raise_for_status()
                    results = sorted(answer.json()["results"], key=lambda r: r["index"])
                    scores[arm] = np.array([r["relevance_score"] for r in results])
                    if request:
                        times[arm].append(elapsed)
                differences.append(float(np.abs(scores["indexed"] - scores["not indexed"]).max()))
    finally:
        shutil.rmtree(folder.parent)
    summary = {
        arm: {"p50_ms": round(statistics.median(t), 1), "mean_ms": round(statistics.mean(t), 1)}
        for arm, t in times.items()
    }
    summary["max_relevance_score_difference"] = {"max": round(max(differences), 5)}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
