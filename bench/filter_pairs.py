"""Apply the consistency filter to a pair file written without it (reports/softsrv.md).

Each pair keeps ``kept = true`` when the first stage of ``--index`` ranks the pair's own
passage in the top ``--top-k`` for its query (``training.consistency``, the same filter as
``loupe generate --filter-top-k``); the rank is recorded either way. The first stage is a
Loupe index (``--index``, dense) or BM25 built here over ``--bm25-corpus``. Writes a new pair
file and its qrels; the input is not changed.

    PYTHONPATH=. python bench/filter_pairs.py runs/softsrv-synthetic/scifact-hard-prompt.jsonl \\
        --index runs/scifact-index --top-k 10 --out runs/softsrv-synthetic/scifact-hard-top10.jsonl
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from training.consistency import bm25_corpus_first_stage, consistency_ranks, index_first_stage
from training.synthetic_pairs import append_pairs, qrels_path, read_pairs, write_qrels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", type=Path)
    first_stage = parser.add_mutually_exclusive_group(required=True)
    first_stage.add_argument("--index", type=Path, help="a Loupe index folder (dense search)")
    first_stage.add_argument("--bm25-corpus", type=Path, help="a corpus to search with BM25")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; remove it first")
    pairs = read_pairs(args.pairs, include_dropped=True)
    search = (
        index_first_stage(args.index)
        if args.index is not None
        else bm25_corpus_first_stage(args.bm25_corpus)
    )
    ranks = consistency_ranks(
        search,
        [p.query for p in pairs],
        [p.doc_id for p in pairs],
        args.top_k,
    )
    filtered = [
        replace(p, kept=rank is not None, first_stage_rank=rank)
        for p, rank in zip(pairs, ranks, strict=True)
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    append_pairs(args.out, filtered)
    kept = write_qrels(filtered, qrels_path(args.out))
    print(f"{kept} of {len(pairs)} pairs kept (own passage in the top {args.top_k}); {args.out}")


if __name__ == "__main__":
    main()
