"""``/v1/rerank`` when every document is in the document cache: what a request costs besides
encoding (the query pass, scoring, counting tokens, HTTP), reports/performance.md.

    LOUPE_DATA_DIR=../shared/data PYTHONPATH=. python bench/rerank_warm.py [--requests 30]

The app runs in process (FastAPI's TestClient, the shipped re-ranker, PyTorch on the CPU).
For each set, 100 passages are sent once to fill the cache, then ``--requests`` more times;
prints p50 and mean milliseconds and the ``usage.total_tokens`` the answer reports.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from fastapi.testclient import TestClient

from evaluation.datasets import data_root
from index.readers import read_corpus
from service.app import create_app
from service.settings import ServiceSettings

QUERY = "what is the effect of vitamin d on bone density"


def passages(name: str, n: int) -> list[str]:
    """The first ``n`` passages of DL19's corpus (``dl19``) or SciFact's (``scifact``)."""
    root = data_root()
    path = root / "beir-scifact" if name == "scifact" else root / "trec-dl-2019-passage"
    corpus = path if name == "scifact" else path / "corpus.jsonl"
    return [d.full_text for d in itertools.islice(read_corpus(corpus), n)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--docs", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(2)
    settings = ServiceSettings(
        index=Path(tempfile.mkdtemp()) / "index", device="cpu", runtime="torch"
    )
    results = {}
    with TestClient(create_app(settings)) as client:
        while not client.get("/ready").json()["ready"]:
            time.sleep(0.2)
        for name in ("dl19", "scifact"):
            docs = passages(name, args.docs)
            body = {"query": QUERY, "documents": docs}
            client.post("/v1/rerank", json=body).raise_for_status()  # fills the cache
            times = []
            for _ in range(args.requests):
                started = time.perf_counter()
                answer = client.post("/v1/rerank", json=body)
                times.append(1000 * (time.perf_counter() - started))
                answer.raise_for_status()
            results[name] = {
                "mean_chars": round(sum(map(len, docs)) / len(docs)),
                "p50_ms": round(statistics.median(times), 1),
                "mean_ms": round(statistics.mean(times), 1),
                "total_tokens": answer.json()["usage"]["total_tokens"],
            }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
