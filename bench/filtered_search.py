"""What a metadata filter costs the first stage, and what an approximate index finds with one
(reports/performance.md, "Filtered search").

    PYTHONPATH=. python bench/filtered_search.py [--docs 100000] [--queries 50] [--seed 0] \
        [--form values|range] [--factories Flat HNSW32]

A synthetic index (random unit vectors, 384-d, in a live index: SQLite docstore + FAISS)
whose documents carry ``{"group": i % 1000}``; filters pass 50%, 10%, 1% and 0.1% of them
(``group`` in the first 500, 100, 10 or 1 values; ``--form range``: ``group`` below 500,
100, 10 or 1). For a flat and an HNSW32 index (efSearch
256), prints the p50 milliseconds of a top-100 search per query, unfiltered and filtered
(``p50_ms_scan``: the filter read from the docstore each time; ``p50_ms``: the live index's
kept keys, as a service sees a repeated filter; ``p50_ms_after_write``: the same with one
document written before each search), and recall@100 of what the service returns
against the exact top 100 among the passing documents (and of the index alone with a
selector, whatever the path). Passing sets of up to
``EXACT_FILTER_LIMIT`` documents are scored exactly from the docstore; larger ones go through
the index with a selector.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from index.exact_search import top_k_inner_product
from index.live import LiveIndex
from index.metadata_filter import MetadataFilter
from index.records import Document
from index.searcher import EXACT_FILTER_LIMIT

DIM = 384
LATENT = 32
GROUPS = 1000
DEPTH = 100
SHARES = (1.0, 0.5, 0.1, 0.01, 0.001)


def filter_passing(share: float, form: str = "values") -> MetadataFilter | None:
    """A filter that ``share`` of the documents pass (None for all): ``group`` one of the
    first values, or (``form="range"``) the same groups as a range, ``{"lt": n}``."""
    if share == 1.0:
        return None
    if form == "range":
        return MetadataFilter.from_mapping({"group": {"lt": int(GROUPS * share)}})
    return MetadataFilter.from_mapping({"group": list(range(int(GROUPS * share)))})


def label_of(share: float) -> str:
    return "no filter" if share == 1.0 else f"{share:.1%} pass"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--form", choices=["values", "range"], default="values", help="how filters say groups"
    )
    parser.add_argument("--factories", nargs="+", default=["Flat", "HNSW32"])
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    # 384-d vectors of intrinsic dimension ~32, as sentence embeddings are far from isotropic
    # (i.i.d. random 384-d vectors are HNSW's worst case, a recall no real corpus shows)
    mixing = rng.normal(size=(LATENT, DIM)).astype(np.float32)
    vectors = rng.normal(size=(args.docs, LATENT)).astype(np.float32) @ mixing
    vectors += 0.1 * rng.normal(size=vectors.shape).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.normal(size=(args.queries, LATENT)).astype(np.float32) @ mixing
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    groups = np.arange(args.docs) % GROUPS
    results: dict[str, dict[str, dict[str, float | str]]] = {}
    for factory in args.factories:
        folder = Path(tempfile.mkdtemp()) / "index"
        live = LiveIndex.open_or_create(folder, model="synthetic", dimension=DIM, factory=factory)
        live.reader.vectors.set_search_params(ef_search=256)  # HNSW's default 16 is below k
        started = time.perf_counter()
        for start in range(0, args.docs, 10_000):
            stop = min(start + 10_000, args.docs)
            docs = [
                Document(str(i), "t", metadata={"group": int(groups[i])})
                for i in range(start, stop)
            ]
            live.add(docs, vectors[start:stop])
        print(f"{factory}: {args.docs} documents added in {time.perf_counter() - started:.1f} s")
        rows: dict[str, dict[str, float | str]] = {}
        for share in SHARES:
            where = filter_passing(share, args.form)
            passing = np.flatnonzero(groups < int(GROUPS * share))
            _, exact = top_k_inner_product(queries, passing + 1, vectors[passing], DEPTH)
            times, scans, recalls, selector_recalls = [], [], [], []
            for q in range(args.queries):
                query = queries[q : q + 1]
                started = time.perf_counter()
                live.reader.search_vectors(query, DEPTH, where)  # reads the docstore each time
                scans.append(1000 * (time.perf_counter() - started))
                started = time.perf_counter()
                hits = live.search_vectors(query, DEPTH, where)[0]  # keys kept since the first
                times.append(1000 * (time.perf_counter() - started))
                found = {int(h.document.id) + 1 for h in hits}  # docstore keys start at 1
                recalls.append(len(found & set(exact[q].tolist())) / min(DEPTH, len(passing)))
                # what the index alone finds with the passing keys as a selector
                _, among = live.reader.vectors.search_among(query, DEPTH, passing + 1)
                common = (set(among[0].tolist()) - {-1}) & set(exact[q].tolist())
                selector_recalls.append(len(common) / min(DEPTH, len(passing)))
            rows[label_of(share)] = {
                "passing": len(passing),
                "path": "index"
                if where is None or factory == "Flat" or len(passing) > EXACT_FILTER_LIMIT
                else "exact",
                "p50_ms_scan": round(statistics.median(scans), 2),
                "p50_ms": round(statistics.median(times[1:]), 2),
                "recall@100": round(statistics.mean(recalls), 4),
                "recall@100_selector_only": round(statistics.mean(selector_recalls), 4),
            }
        # then a write before each search (a document replaced by itself: a new key, the
        # same vector and metadata), as a service taking a steady stream of writes sees it;
        # after the recall measures, which name documents by their first keys
        for share in SHARES:
            where = filter_passing(share, args.form)
            after_write, agree = [], []
            for q in range(args.queries):
                j = int(rng.integers(args.docs))
                rewritten = Document(str(j), "t", metadata={"group": int(groups[j])})
                live.add([rewritten], vectors[j : j + 1])
                query = queries[q : q + 1]
                started = time.perf_counter()
                hits = live.search_vectors(query, DEPTH, where)[0]
                after_write.append(1000 * (time.perf_counter() - started))
                scanned = live.reader.search_vectors(query, DEPTH, where)[0] if where else hits
                agree.append([h.document.id for h in hits] == [h.document.id for h in scanned])
            row = rows[label_of(share)]
            row["p50_ms_after_write"] = round(statistics.median(after_write), 2)
            row["same_as_scan_after_writes"] = round(statistics.mean(agree), 4)
            print(factory, label_of(share), row)
        results[factory] = rows
        live.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
