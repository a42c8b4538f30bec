"""LAuReL in the re-ranker's backbone against the frozen backbone (reports/lite.md).

Two MaxSim re-rankers (128-d projection) trained by ``training.lite_job.train_lite`` on the
same data, seed and budget as each other: SciFact train with dense hard negatives plus the
MS MARCO triples sample (bench/lite_experiment.py's sources), never the evaluation queries.
  - ``frozen``: MiniLM frozen, its token states cached; the projection and temperature train;
  - ``laurel``: LAuReL RW+LR residuals (rank 16) added to every MiniLM layer and trained
    with the projection (lr 1e-3 for both); MiniLM's own weights stay frozen.
The budget is cut to what a CPU can train with the backbone in the loop (8 queries, 3 hard
negatives each plus in-batch ones, 300 steps). Then both re-rank the DL19 BM25 top-100 and
the SciFact test dense top-100 from states computed with each model's own backbone, and
are compared query by query. Usage:

    python bench/lite_laurel.py --out runs/lite-laurel [--steps 300]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.lite_experiment import (
    MEASURES,
    add_experiment_inputs,
    compare_arms,
    eval_sets,
    evaluate_on_sets,
    rerank_cached_states,
    trained_model,
    training_sources,
)
from evaluation.datasets import data_root
from evaluation.metrics import MetricsResult, format_table
from models.lite import ScorerConfig
from training.lite_config import LiteTrainConfig
from training.token_cache import TokenCache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/lite-laurel"))
    add_experiment_inputs(parser, negatives_run=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--negatives", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = data_root()
    sources = training_sources(data, args.negatives_run)
    arms: dict[str, dict] = {
        "frozen": {"cache": args.cache},
        "laurel": {"laurel": ["rw", "lr"], "cache": None},
    }
    sets = eval_sets(data, args.scifact_index)
    base_cache = TokenCache.load(args.cache)
    rows: dict[str, dict[str, float]] = {}
    results: dict[tuple[str, str], MetricsResult] = {}
    for arm, extra in arms.items():
        config = LiteTrainConfig(
            out=args.out / f"{arm}-s{args.seed}",
            data=sources,
            dim=128,
            scorer=ScorerConfig(kind="maxsim"),
            max_steps=args.steps,
            batch_size=args.batch_size,
            negatives=args.negatives,
            seed=args.seed,
            eval_every=100,
            patience=10,
            **extra,
        )
        model = trained_model(config)
        cache = base_cache
        if extra["cache"] is None:
            # States from this model's own (LAuReL) backbone, kept for reruns.
            states = config.out / "eval-states.npz"
            cache = TokenCache.load(states) if states.is_file() else TokenCache()
            cached_before = len(cache)
            for spec in sets.values():
                cache.ensure(model, spec.queries.values(), model.config.q_len)
                cache.ensure(model, spec.texts.values(), model.config.d_len)
            if len(cache) > cached_before:
                cache.save(states)
        for set_name, result in evaluate_on_sets(model, cache, sets, rerank_cached_states).items():
            results[(set_name, arm)] = result
            rows[f"{set_name} | {arm}"] = result.aggregate
    print(format_table(rows, MEASURES))
    tests = compare_arms(results, sets, "laurel", "frozen")
    (args.out / f"results-s{args.seed}.json").write_text(
        json.dumps(
            {"metrics": rows, "laurel_vs_frozen": tests, "args": vars(args)}, indent=2, default=str
        )
    )


if __name__ == "__main__":
    main()
