"""What Cohere's compressed embedding types keep of Loupe's vectors (reports/service.md).

``/v1/embed`` and ``/v2/embed`` answer ``int8``, ``uint8``, ``binary`` and ``ubinary``
(service/routers/embed_encoding.py). Here SciFact's 5,183 documents, as the index stores
their vectors (the packaged MiniLM), and its queries are searched exactly in each form:

- ``float``: the dot product of the float32 vectors (the service's own search);
- ``int8`` at several ranges (``sigmas``): the dot product of both sides' int8 bytes
  (uint8 is the same bytes shifted by 128, for stores that want unsigned);
- ``binary``: Hamming distance between both sides' bits (``binary`` and ``ubinary`` are the
  same bits);
- ``binary >> float`` : the binary top 100 re-scored by the float query against the
  documents' float vectors (the usual use of bits: a cheap first pass).

The int8 range is chosen on SciFact **train** queries (809) and scored on **test** (300).
Deterministic. Usage (an index of SciFact with the packaged MiniLM, e.g. from
``loupe index build --corpus $D/beir-scifact --out runs/scifact-index-lite``)::

    LOUPE_DATA_DIR=../shared/data PYTHONPATH=. python bench/embedding_types.py \
        --index runs/scifact-index-lite --out runs/embedding-types.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from evaluation.datasets import data_root
from evaluation.metrics import evaluate
from index.readers.queries import read_queries
from index.readers.trec import read_qrels
from index.searcher import IndexReader
from models.encoder import EncoderConfig, TextEncoder
from service.routers.embed_encoding import to_int8, to_ubinary

SIGMAS = [2.0, 3.0, 4.0, 5.0, 6.0, 8.0]
MEASURES = ["nDCG@10", "R@100"]
DEPTH = 100

Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(queries, dim)`` and ``(docs, dim)`` float vectors -> ``(queries, docs)`` scores."""


def float_scores(queries: np.ndarray, docs: np.ndarray) -> np.ndarray:
    return queries @ docs.T


def int8_scorer(sigmas: float) -> Scorer:
    def scores(queries: np.ndarray, docs: np.ndarray) -> np.ndarray:
        q, d = to_int8(queries, sigmas).astype(np.int32), to_int8(docs, sigmas).astype(np.int32)
        return (q @ d.T).astype(np.float64)

    return scores


def hamming_scores(queries: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """Minus the Hamming distance of the packed bits."""
    q, d = to_ubinary(queries), to_ubinary(docs)
    differing = np.unpackbits(q[:, None, :] ^ d[None, :, :], axis=-1).sum(-1)
    return -differing.astype(np.float64)


def binary_then_float(queries: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """The Hamming top ``DEPTH`` re-scored by float dot products; the rest stay below."""
    coarse = hamming_scores(queries, docs)
    out = np.full_like(coarse, -np.inf)
    top = np.argsort(-coarse, axis=1, kind="stable")[:, :DEPTH]
    rows = np.arange(len(queries))[:, None]
    out[rows, top] = (queries @ docs.T)[rows, top]
    return out


def run_of(scores: np.ndarray, qids: list[str], dids: list[str]) -> dict[str, dict[str, float]]:
    top = np.argsort(-scores, axis=1, kind="stable")[:, :DEPTH]
    return {
        qid: {dids[j]: float(DEPTH - rank) for rank, j in enumerate(row)}
        for qid, row in zip(qids, top, strict=True)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", type=Path, default=Path("runs/scifact-index-lite"))
    parser.add_argument("--out", type=Path, default=Path("runs/embedding-types.json"))
    args = parser.parse_args()
    scifact = data_root() / "beir-scifact"
    reader = IndexReader.open(args.index, read_only=True)
    keys, doc_vectors = reader.docstore.vectors_for_keys(reader.docstore.all_keys())
    stored = reader.docstore.get_by_keys(keys.tolist())
    dids = [stored[int(k)].id for k in keys]
    reader.close()
    encoder = TextEncoder(EncoderConfig(device="cpu"))
    arms: dict[str, Scorer] = {"float": float_scores}
    arms |= {f"int8, sigmas {s:g}": int8_scorer(s) for s in SIGMAS}
    arms |= {"binary (Hamming)": hamming_scores, "binary >> float top 100": binary_then_float}
    results: dict[str, dict[str, dict[str, float]]] = {}
    for split in ("train", "test"):
        queries = read_queries(scifact / "queries.jsonl", split=split)
        qrels = read_qrels(scifact / "qrels" / f"{split}.tsv")
        qids = [q for q in queries if q in qrels]
        started = time.perf_counter()
        query_vectors = encoder.encode([queries[q] for q in qids])
        print(f"{split}: {len(qids)} queries encoded in {time.perf_counter() - started:.1f}s")
        for name, scorer in arms.items():
            run = run_of(scorer(query_vectors, doc_vectors), qids, dids)
            metrics = evaluate(qrels, run, MEASURES, query_ids=qids).aggregate
            results.setdefault(name, {})[split] = metrics
            print(f"  {name:28s} " + "  ".join(f"{m} {metrics[m]:.4f}" for m in MEASURES))
    best = max(SIGMAS, key=lambda s: results[f"int8, sigmas {s:g}"]["train"]["nDCG@10"])
    print(f"int8 range chosen on train: {best:g} sigmas")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"chosen_sigmas": best, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
