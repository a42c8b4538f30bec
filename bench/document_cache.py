"""What /v1/rerank's document cache saves: re-ranking requests of 100 DL19 passages in which
a share of the passages was seen in earlier requests (reports/lite.md).

    python bench/document_cache.py [--requests 12] [--repeat 0.5] [--seed 0]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import time

from evaluation.datasets import data_root
from index.readers import read_corpus, read_queries
from models.array_cache import ArrayCache
from models.late_interaction import LateInteractionModel
from models.late_reranker import LateInteractionReranker
from models.registry import resolve_late_interaction


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=12)
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--repeat", type=float, default=0.5, help="share of seen passages")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dl19 = data_root() / "trec-dl-2019-passage"
    pool = [d.full_text for d in itertools.islice(read_corpus(dl19 / "corpus.jsonl"), 5000)]
    queries = list(read_queries(dl19 / "queries.tsv").values())
    rng = random.Random(args.seed)
    seen: list[str] = []
    fresh = iter(rng.sample(pool, len(pool)))
    requests = []
    for _ in range(args.requests):
        n_seen = int(args.docs * args.repeat) if seen else 0
        docs = rng.sample(seen, min(n_seen, len(seen))) if n_seen else []
        docs += [next(fresh) for _ in range(args.docs - len(docs))]
        seen += docs
        requests.append((rng.choice(queries), docs))
    model = LateInteractionModel.load(resolve_late_interaction("default"))
    results = {}
    for name, cache in (("no cache", None), ("document cache", ArrayCache(256 << 20))):
        reranker = LateInteractionReranker(model, cache=cache)
        times = []
        for query, docs in requests:
            started = time.perf_counter()
            reranker.score(query, docs)
            times.append(1000 * (time.perf_counter() - started))
        results[name] = {
            "p50_ms_after_first": statistics.median(times[1:]),
            "mean_ms_after_first": statistics.mean(times[1:]),
            "hits": cache.hits if cache else 0,
            "misses": cache.misses if cache else 0,
        }
    print(
        json.dumps(
            {
                "requests": args.requests,
                "docs": args.docs,
                "repeat": args.repeat,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
