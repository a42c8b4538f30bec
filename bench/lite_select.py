"""Choose among trained re-rankers on held-out *training* queries (never the test sets).

The dev queries are the SciFact-train queries that ``train_lite`` held out (same sources,
seed and dev fraction as bench/lite_experiment.py); each model re-ranks their dense top-50
and is scored with nDCG@10 against the train qrels. Usage:

    python bench/lite_select.py MODEL_FOLDER... [--cache runs/lite-exp/token-cache.npz]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.lite_experiment import cache_set_states, rerank_from_cache, scifact_dev_set
from evaluation.datasets import data_root
from evaluation.metrics import evaluate, format_table
from models.late_interaction import LateInteractionModel
from training.token_cache import TokenCache


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--cache", type=Path, default=Path("runs/lite-exp/token-cache.npz"))
    parser.add_argument(
        "--negatives", type=Path, default=Path("runs/lite-exp/scifact-train-dense50.trec")
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dev-fraction", type=float, default=0.1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    data = data_root()
    spec = scifact_dev_set(data, args.negatives, args.dev_fraction, args.seed)
    dev_ids = list(spec.queries)
    cache = TokenCache.load(args.cache)
    base = LateInteractionModel.zero_shot()
    cache_set_states(cache, base, spec, "dev")
    rows = {}
    systems = {"maxsim-untrained-384d": base}
    systems |= {f"{m.parent.name}": LateInteractionModel.load(m) for m in args.models}
    for name, model in systems.items():
        reranked, _ = rerank_from_cache(model, cache, spec)
        rows[name] = evaluate(
            spec.qrels, reranked, ["nDCG@10", "RR@10"], query_ids=dev_ids
        ).aggregate
    rows["dense top-50 (first stage)"] = evaluate(
        spec.qrels, spec.run, ["nDCG@10", "RR@10"], query_ids=dev_ids
    ).aggregate
    print(f"{len(dev_ids)} held-out SciFact-train queries, dense top-50 re-ranked")
    print(format_table(rows, ["nDCG@10", "RR@10"]))
    if args.out:
        args.out.write_text(json.dumps({"dev_queries": dev_ids, "metrics": rows}, indent=2))


if __name__ == "__main__":
    main()
