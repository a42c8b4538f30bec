"""Would a ColBERTv2-style residual codec keep the shipped re-ranker's ranking? (reports/lite.md)

The token store keeps each 128-d token in int8 (130 bytes) or int4 (66 bytes). ColBERTv2
stores a token as its nearest k-means centroid (2 bytes) plus its residual to it, each
dimension cut to ``b`` bits by global quantile buckets and decoded as the bucket's median
(18 bytes at b = 1, 34 at b = 2). This bench measures what that costs in ranking before the
store implements it:

  - SciFact test (300 queries, dense top 100): the int8 token matrices of an index built
    with ``--token-store``, re-scored as stored and after a round trip through the codec
    (centroids fitted on a sample of that index's own tokens);
  - TREC DL19 (43 queries, BM25 top 100): the candidate passages encoded by the re-ranker
    (float16, as the store receives them), centroids fitted on them.

Deterministic (k-means seed 0). Needs the SciFact index and its re-ranked test run
(reports/lite.md, "Calibrated relevance scores")::

    PYTHONPATH=. python bench/residual_codec.py --index runs/scifact-index-lite \\
        --scifact-run runs/calibration/scifact-test/run.trec
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from bench.harness import write_json
from evaluation.datasets import data_root
from evaluation.metrics import evaluate
from index.readers import read_corpus, read_qrels, read_queries, read_run
from index.readers.trec import Qrels, Run, ranked
from index.searcher import IndexReader
from models.late_reranker import LateInteractionReranker
from models.registry import load_reranker

MEASURES = ["nDCG@10", "RR@10"]


@dataclass(frozen=True)
class ResidualCodec:
    """Centroids ``(k, dim)``, bucket cutoffs ``(2**bits - 1,)`` and bucket values
    ``(2**bits,)`` shared by every dimension."""

    centroids: np.ndarray
    cutoffs: np.ndarray
    values: np.ndarray

    @property
    def bits(self) -> int:
        return int(math.log2(len(self.values)))

    def bytes_per_token(self) -> int:
        """A 2-byte centroid id (up to 65,536 centroids) and ``dim * bits`` packed bits.

        >>> ResidualCodec(np.zeros((4, 128)), np.zeros(3), np.zeros(4)).bytes_per_token()
        34
        """
        return 2 + math.ceil(self.centroids.shape[1] * self.bits / 8)


def bucket_cutoffs_and_values(residuals: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantile cutoffs and bucket medians of all residual values, for ``bits`` per value.

    >>> c, v = bucket_cutoffs_and_values(np.arange(8, dtype=np.float32), 1)
    >>> c.tolist(), v.tolist()
    ([3.5], [1.75, 5.25])
    """
    levels = 2**bits
    flat = residuals.reshape(-1)
    cutoffs = np.quantile(flat, np.arange(1, levels) / levels)
    values = np.quantile(flat, (np.arange(levels) + 0.5) / levels)
    return cutoffs.astype(np.float32), values.astype(np.float32)


def fit_codec(tokens: np.ndarray, centroids: int, bits: int, seed: int = 0) -> ResidualCodec:
    """k-means (spherical, faiss) on ``(n, dim)`` unit tokens, then the residual buckets."""
    data = np.ascontiguousarray(tokens, dtype=np.float32)
    kmeans = faiss.Kmeans(data.shape[1], centroids, niter=20, seed=seed, spherical=True)
    kmeans.train(data)
    centres = kmeans.centroids
    assert centres is not None
    ids = nearest_centroids(centres, data)
    cutoffs, values = bucket_cutoffs_and_values(data - centres[ids], bits)
    return ResidualCodec(centres, cutoffs, values)


def nearest_centroids(centroids: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    _, ids = index.search(np.ascontiguousarray(tokens, dtype=np.float32), 1)
    return ids[:, 0]


def round_trip(codec: ResidualCodec, tokens: np.ndarray) -> np.ndarray:
    """``(n, dim)`` tokens coded (centroid id, bucket per dimension) and decoded, unit length.

    >>> codec = ResidualCodec(np.eye(2, dtype=np.float32), np.array([0.0]), np.array([-0.1, 0.1]))
    >>> round_trip(codec, np.array([[0.9, 0.2]], dtype=np.float32)).round(3).tolist()
    [[0.994, 0.11]]
    """
    x = np.asarray(tokens, dtype=np.float32)
    ids = nearest_centroids(codec.centroids, x)
    codes = np.searchsorted(codec.cutoffs, x - codec.centroids[ids])
    decoded = codec.centroids[ids] + codec.values[codes]
    return decoded / np.linalg.norm(decoded, axis=1, keepdims=True)


def coded_matrices(codec: ResidualCodec, matrices: Sequence[np.ndarray]) -> list[np.ndarray]:
    flat = round_trip(codec, np.concatenate([np.asarray(m, np.float32) for m in matrices]))
    bounds = np.cumsum([len(m) for m in matrices])[:-1]
    return list(np.split(flat, bounds))


def rescored(
    reranker: LateInteractionReranker,
    queries: Mapping[str, str],
    candidates: Mapping[str, list[str]],
    matrices: Mapping[str, np.ndarray],
) -> Run:
    return {
        q: dict(
            zip(
                docs,
                (float(s) for s in reranker.score_stored(queries[q], [matrices[d] for d in docs])),
                strict=True,
            )
        )
        for q, docs in candidates.items()
    }


def compare_forms(
    name: str,
    reranker: LateInteractionReranker,
    queries: Mapping[str, str],
    qrels: Qrels,
    candidates: Mapping[str, list[str]],
    matrices: dict[str, np.ndarray],
    reference: str,
    reference_bytes: int,
    centroids: int,
) -> list[dict[str, object]]:
    """Rows for the matrices as given and after the codec at 1 and 2 bits."""
    ids = list(matrices)
    tokens = np.concatenate([np.asarray(matrices[d], np.float32) for d in ids])
    sample = tokens[np.random.default_rng(0).permutation(len(tokens))[:200_000]]
    rows = []
    forms: dict[str, tuple[dict[str, np.ndarray], int]] = {reference: (matrices, reference_bytes)}
    for bits in (2, 1):
        codec = fit_codec(sample, centroids, bits)
        coded = dict(zip(ids, coded_matrices(codec, [matrices[d] for d in ids]), strict=True))
        forms[f"residual, {centroids} centroids, {bits} bit"] = (coded, codec.bytes_per_token())
    base = None
    for form, (stored, size) in forms.items():
        run = rescored(reranker, queries, candidates, stored)
        scores = evaluate(qrels, run, MEASURES, query_ids=list(candidates)).aggregate
        base = base if base is not None else scores["nDCG@10"]
        rows.append(
            {
                "set": name,
                "form": form,
                "bytes_per_token": size,
                **scores,
                "delta_nDCG@10": scores["nDCG@10"] - base,
            }
        )
        print(
            f"| {name} | {form} | {size} | {scores['nDCG@10']:.4f} "
            f"({scores['nDCG@10'] - base:+.4f}) | {scores['RR@10']:.4f} |",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=Path("runs/scifact-index-lite"))
    parser.add_argument(
        "--scifact-run", type=Path, default=Path("runs/calibration/scifact-test/run.trec")
    )
    parser.add_argument("--centroids", type=int, default=8192)
    parser.add_argument("--out", type=Path, default=Path("runs/residual-codec"))
    args = parser.parse_args()
    data = data_root()
    reranker = load_reranker("default", device="cpu")
    assert isinstance(reranker, LateInteractionReranker)
    print("| set | stored form | bytes per token | nDCG@10 (vs first row) | RR@10 |")
    print("|---|---|---|---|---|")
    rows: list[dict[str, object]] = []

    sci = data / "beir-scifact"
    reader = IndexReader.open(args.index)
    try:
        run = read_run(args.scifact_run)
        candidates = {q: [d for d, _ in ranked(c, 100)] for q, c in run.items()}
        wanted = sorted({d for docs in candidates.values() for d in docs})
        keys = reader.docstore.keys_for_ids(wanted)
        assert reader.tokens is not None, f"{args.index} has no token store"
        stored = reader.tokens.get([keys[d] for d in wanted])
        matrices = {d: m for d, m in zip(wanted, stored, strict=True) if m is not None}
        if len(matrices) != len(wanted):
            raise SystemExit(f"{len(wanted) - len(matrices)} candidates are not in the store")
        queries = read_queries(sci / "queries.jsonl", "test")
        qrels = read_qrels(sci / "qrels" / "test.tsv")
        store = reader.tokens
        rows += compare_forms(
            "SciFact test",
            reranker,
            queries,
            qrels,
            candidates,
            matrices,
            f"{store.dtype.value} (the store as built)",
            store.dtype.bytes_per_token(store.dim),
            args.centroids,
        )
    finally:
        reader.close()

    dl19 = data / "trec-dl-2019-passage"
    bm25 = read_run(dl19 / "run.BM25.top100.trec")
    qrels = read_qrels(dl19 / "qrels.trec")
    candidates = {q: [d for d, _ in ranked(c, 100)] for q, c in bm25.items() if q in qrels}
    wanted = sorted({d for docs in candidates.values() for d in docs})
    texts = {doc.id: doc.full_text for doc in read_corpus(dl19 / "corpus.jsonl")}
    encoded = reranker.model.document_matrices([texts[d] for d in wanted])
    matrices = dict(zip(wanted, encoded, strict=True))
    rows += compare_forms(
        "DL19",
        reranker,
        read_queries(dl19 / "queries.tsv"),
        qrels,
        candidates,
        matrices,
        "float16 (as encoded)",
        2 * reranker.model.dim,
        args.centroids,
    )
    write_json(args.out / "results.json", {"centroids": args.centroids, "rows": rows})


if __name__ == "__main__":
    main()
