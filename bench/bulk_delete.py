"""What deleting documents costs a live index, one at a time and in bulk (reports/performance.md,
"Deleting documents").

    PYTHONPATH=. python bench/bulk_delete.py [--docs 20000] [--seed 0]

A live index (SQLite docstore with its full-text index, FAISS Flat or HNSW32) of random
384-d unit vectors whose documents carry ``{"t": i % 10}``. Measured on each, in this order:
deleting the 10% with ``t = 3`` by filter (``delete_matching``, what ``POST
/v1/documents/delete`` with a filter runs), the 10% with ``t = 4`` by ids (``delete_many``),
and 500 with ``t = 5`` one at a time (``delete``, what ``DELETE /v1/documents/{id}`` runs),
without HTTP. Prints milliseconds in all and per document.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from index.live import LiveIndex
from index.metadata_filter import MetadataFilter
from index.records import Document

DIM = 384
ONE_BY_ONE = 500


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    vectors = np.random.default_rng(args.seed).normal(size=(args.docs, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for factory in ("Flat", "HNSW32"):
        folder = Path(tempfile.mkdtemp()) / "index"
        live = LiveIndex.open_or_create(folder, model="synthetic", dimension=DIM, factory=factory)
        documents = [
            Document(str(i), f"document {i} about topic {i % 10}", metadata={"t": i % 10})
            for i in range(args.docs)
        ]
        live.add(documents, vectors)
        rows: dict[str, dict[str, float]] = {}
        started = time.perf_counter()
        count = live.delete_matching(MetadataFilter.from_mapping({"t": 3}))
        rows["by filter"] = timing(started, count)
        ids = [str(i) for i in range(args.docs) if i % 10 == 4]
        started = time.perf_counter()
        count = len(live.delete_many(ids))
        rows["by ids"] = timing(started, count)
        ids = [str(i) for i in range(args.docs) if i % 10 == 5][:ONE_BY_ONE]
        started = time.perf_counter()
        count = sum(live.delete(i) for i in ids)
        rows["one at a time"] = timing(started, count)
        for label, row in rows.items():
            print(factory, label, row)
        results[factory] = rows
        live.close()
    print(json.dumps(results, indent=2))


def timing(started: float, count: int) -> dict[str, float]:
    """Milliseconds since ``started`` for ``count`` deletions, in all and per document."""
    ms = 1000 * (time.perf_counter() - started)
    return {"documents": count, "ms": round(ms, 1), "ms_per_document": round(ms / count, 3)}


if __name__ == "__main__":
    main()
