"""Hard negatives from BM25 instead of the dense index: does training on the kind of
candidates DL19 re-ranks (BM25's) move DL19? (reports/lite.md, "Lexical hard negatives").

The shipped recipe (``configs/reranker-default.toml``: SciFact train + the MS MARCO triples,
8-window MaxP training) takes its SciFact negatives from the MiniLM dense index's top 50.
DL19's candidates are BM25's top 100, a different kind of near miss. This bench trains the
recipe per seed twice, changing only the SciFact negatives run:

- ``dense``: the recipe's own run (``runs/scifact-train-dense50``), which is
  ``bench/lite_window_training.py``'s ``maxp`` arm: finished runs there are reused;
- ``lexical``: ``--negatives``, the top 50 of the full-text index (BM25) for the same
  queries, made with::

    loupe eval --index runs/scifact-index-hybrid --queries $D/beir-scifact/queries.jsonl \\
        --split train --qrels $D/beir-scifact/qrels/train.tsv --first-stage lexical \\
        --depth 50 --out runs/scifact-train-lexical50

Both are scored as served (8 windows, cached states) on SciFact test (dense top 100) and
DL19 (BM25 top 100), with paired t-tests of ``lexical`` against ``dense``::

    PYTHONPATH=. python bench/lite_negatives.py --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.harness import write_json
from bench.lite_experiment import MEASURES, paired_ndcg, trained_model
from bench.lite_window_training import bench_setup, rerank_cached_windows
from evaluation.metrics import evaluate, format_table
from models.registry import load_late_interaction
from training.batches import load_examples
from training.lite_job import LiteTrainConfig, load_lite_config
from training.run_config import QrelsSource


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/lexical-negatives"))
    parser.add_argument(
        "--negatives", type=Path, default=Path("runs/scifact-train-lexical50/run.trec")
    )
    parser.add_argument("--recipe-runs", type=Path, default=Path("runs/window-training"))
    parser.add_argument("--config", type=Path, default=Path("configs/reranker-default.toml"))
    parser.add_argument("--scifact-index", type=Path, default=Path("runs/scifact-index-lite"))
    parser.add_argument("--cache", type=Path, default=Path("runs/window-training/cache.npz"))
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    sets, cache = bench_setup(args.out, args.scifact_index, args.cache)
    cached = len(cache)
    base = load_late_interaction("maxsim", device="cpu")
    seeds = [int(s) for s in args.seeds.split(",")]

    def recipe(out: Path, seed: int, negatives: Path | None) -> LiteTrainConfig:
        config = load_lite_config(args.config, {"out": str(out), "seed": seed, "cache": None})
        if negatives is None:
            return config
        data = [
            s.model_copy(update={"negatives_run": negatives}) if isinstance(s, QrelsSource) else s
            for s in config.data
        ]
        return config.model_copy(update={"data": data})

    configs = {
        (arm, seed): recipe(folder / f"{prefix}-s{seed}", seed, negatives)
        for arm, folder, prefix, negatives in (
            ("dense", args.recipe_runs, "maxp", None),
            ("lexical", args.out, "lexical", args.negatives),
        )
        for seed in seeds
    }
    windows = next(iter(configs.values())).train_windows
    for config in configs.values():  # every passage any arm trains on, cached once
        examples = load_examples(config.data)
        passages = {e.positive for e in examples} | {n for e in examples for n in e.negatives}
        cache.ensure(base, {e.query for e in examples}, base.config.q_len, desc="queries")
        cache.ensure_windows(base, passages, windows, desc="training passages, windows")
    for name, spec in sets.items():
        cache.ensure(base, spec.queries.values(), base.config.q_len, desc=f"{name} queries")
        cache.ensure_windows(base, list(spec.texts.values()), 8, desc=f"{name} windows")
    if len(cache) > cached:
        cache.save(args.cache)

    models = {
        f"{arm} s{seed}": trained_model(c, token_cache=cache) for (arm, seed), c in configs.items()
    }
    runs = {
        set_name: {name: rerank_cached_windows(m, cache, spec, 8) for name, m in models.items()}
        for set_name, spec in sets.items()
    }
    metrics = {
        set_name: {
            name: evaluate(sets[set_name].qrels, run, MEASURES, query_ids=sets[set_name].queries)
            for name, run in by_model.items()
        }
        for set_name, by_model in runs.items()
    }
    tests = {
        f"{set_name} s{seed}": paired_ndcg(by[f"lexical s{seed}"], by[f"dense s{seed}"])
        for set_name, by in metrics.items()
        for seed in seeds
    }
    for set_name, by in metrics.items():
        print(f"\n{set_name}\n" + format_table({n: r.aggregate for n, r in by.items()}, MEASURES))
    for label, test in tests.items():
        print(f"lexical - dense negatives, {label}: {json.dumps(test)}")
    write_json(
        args.out / "results.json",
        {
            "metrics": {s: {n: r.aggregate for n, r in by.items()} for s, by in metrics.items()},
            "lexical_vs_dense": tests,
            "args": vars(args),
        },
    )


if __name__ == "__main__":
    main()
