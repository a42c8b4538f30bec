"""Copies of an index whose token store holds the same matrices as int8 or int4 (reports/lite.md).

Reads every matrix of ``--index``'s float16 token store, writes it again in each of
``--dtypes`` (``index.token_quantization``) into a copy of the index folder
(``OUT/<dtype>``, manifest updated), and prints bytes per passage and the median time of
reading 100 random candidates' matrices. Score the copies with the
product's own paths:

    PYTHONPATH=. python bench/token_store_dtypes.py --index runs/scifact-index-lite \\
        --out runs/token-dtypes --dtypes int8 int4
    loupe eval --queries $D/beir-scifact/queries.jsonl --split test \\
        --qrels $D/beir-scifact/qrels/test.tsv --index runs/token-dtypes/int8 \\
        --reranker default --depth 100 --out runs/token-dtypes/eval-int8
    python bench/rerank_latency.py --index runs/token-dtypes/int8 \\
        --queries $D/beir-scifact/queries.jsonl --split test
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import time
from dataclasses import replace
from pathlib import Path

from index.manifest import Manifest
from index.token_quantization import TokenDtype
from index.token_store import TokenStore, TokenStoreWriter


def convert(index: Path, out: Path, dtype: TokenDtype, chunk: int = 512) -> TokenStore:
    """Copy ``index`` to ``out`` with its token store rewritten as ``dtype``."""
    manifest = Manifest.load(index)
    if not manifest.token_store_file:
        raise SystemExit(f"{index} has no token store (build it with --token-store)")
    source = TokenStore(index / manifest.token_store_file)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(index, out, ignore=shutil.ignore_patterns(manifest.token_store_file))
    name = f"{manifest.token_store_file}-{dtype.value}"
    meta = {k: v for k, v in source.meta.items() if k not in ("dim", "count", "tokens", "dtype")}
    writer = TokenStoreWriter(out / name, source.dim, meta, dtype)
    keys = source.keys()
    for start in range(0, len(keys), chunk):
        batch = keys[start : start + chunk]
        for key, matrix in zip(batch, source.get(batch), strict=True):
            assert matrix is not None
            writer.add(key, matrix)
    writer.close()
    replace(
        manifest, token_store_file=name, token_store={**manifest.token_store, **writer.meta}
    ).save(out)
    return TokenStore(out / name)


def get_ms(store: TokenStore, draws: int = 50, candidates: int = 100, seed: int = 0) -> float:
    """Median milliseconds of ``store.get`` for ``candidates`` random keys."""
    rng = random.Random(seed)
    keys = store.keys()
    times = []
    for _ in range(draws):
        batch = rng.sample(keys, min(candidates, len(keys)))
        started = time.perf_counter()
        store.get(batch)
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--dtypes", nargs="+", type=TokenDtype, default=[TokenDtype.int8, TokenDtype.int4]
    )
    args = parser.parse_args()
    manifest = Manifest.load(args.index)
    assert manifest.token_store_file
    rows = {"float16 (source)": TokenStore(args.index / manifest.token_store_file)}
    for dtype in args.dtypes:
        rows[dtype.value] = convert(args.index, args.out / dtype.value, dtype)
    report = {}
    for name, store in rows.items():
        tokens = int(store.meta["tokens"])
        report[name] = {
            "bytes_per_passage": round(store.bytes_per_document(), 1),
            "bytes_per_token": store.dtype.bytes_per_token(store.dim),
            "tokens_per_passage": round(tokens / max(1, len(store)), 1),
            "get_100_ms_median": round(get_ms(store), 2),
        }
        print(name, report[name])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sizes.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
