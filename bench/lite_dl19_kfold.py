"""In-domain check on TREC DL19: 5-fold cross-validated LITE vs MaxSim (reports/lite.md).

DL19 is the only set here with MS MARCO queries and graded judgments, so a re-ranker that
trains on it must be scored on queries it did not see: the 43 queries are split into 5
folds (seeded); each fold's model trains on the other 4 (positives: grade >= 2; negatives:
the rest of the BM25 top-100; optional KL distillation from a teacher run's scores) and
re-ranks its own fold's BM25 top-100. The 5 held-out runs together give one run over all
43 queries. Frozen MiniLM, cached token states (as in bench/lite_experiment.py).

    python bench/lite_dl19_kfold.py --out runs/lite-kfold [--teacher SPLADE_P_P_ENSEMBLE_DISTIL]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.lite_experiment import (
    MEASURES,
    add_experiment_inputs,
    eval_sets,
    kfold,
    rerank_from_cache,
)
from evaluation.datasets import data_root
from evaluation.metrics import evaluate, format_table
from models.late_interaction import LateInteractionConfig, LateInteractionModel
from models.lite import ScorerConfig
from training.lite_config import LiteTrainConfig
from training.lite_job import train_lite
from training.run_config import QrelsSource
from training.token_cache import TokenCache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/lite-kfold"))
    add_experiment_inputs(parser, negatives_run=False)
    parser.add_argument("--kinds", default="maxsim,sorted")
    parser.add_argument("--teacher", default="SPLADE_P_P_ENSEMBLE_DISTIL")
    parser.add_argument("--loss", default="kl", choices=["ce", "kl", "margin_mse"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = data_root()
    dl19 = data / "trec-dl-2019-passage"
    spec = eval_sets(data, args.scifact_index)["dl19-bm25"]
    qids = sorted(spec.queries)
    folds = kfold(qids, args.folds, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, float]] = {}
    for kind in args.kinds.split(","):
        merged: dict[str, dict[str, float]] = {}
        for f, held_out in enumerate(folds):
            train_ids = [q for q in qids if q not in held_out]
            ids_file = args.out / f"fold{f}-train-qids.txt"
            ids_file.write_text("\n".join(train_ids) + "\n")
            source = QrelsSource(
                queries=dl19 / "queries.tsv",
                qrels=dl19 / "qrels.trec",
                corpus=dl19 / "corpus.jsonl",
                negatives_run=dl19 / "run.BM25.top100.trec",
                negative_depth=100,
                negatives_per_query=64,
                min_positive_grade=2,
                teacher_run=(dl19 / f"run.{args.teacher}.top100.trec")
                if args.loss != "ce"
                else None,
                query_ids_file=ids_file,
            )
            config = LiteTrainConfig(
                out=args.out / f"{kind}-{args.loss}-fold{f}",
                data=[source],
                dim=args.dim,
                scorer=ScorerConfig(kind=kind),
                loss=args.loss,
                max_steps=args.steps,
                dev_fraction=0.0,
                eval_every=0,
                patience=None,
                seed=args.seed,
                cache=args.cache,
                warmup_steps=30,
            )
            train_lite(config, show_progress=False)
            model = LateInteractionModel.load(config.out / "best")
            fold_spec = spec.restricted(held_out)
            cache = TokenCache.load(args.cache)
            run, _ = rerank_from_cache(model, cache, fold_spec)
            merged.update(run)
        result = evaluate(spec.qrels, merged, MEASURES, query_ids=spec.queries)
        rows[f"{kind} ({args.loss}, {args.folds}-fold CV)"] = result.aggregate
    base = LateInteractionModel(LateInteractionConfig(dim=None, scorer=ScorerConfig("maxsim")))
    run, _ = rerank_from_cache(base, TokenCache.load(args.cache), spec)
    rows["maxsim untrained 384-d"] = evaluate(
        spec.qrels, run, MEASURES, query_ids=spec.queries
    ).aggregate
    print(format_table(rows, MEASURES))
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "metrics": rows,
                "folds": folds,
                "teacher": args.teacher,
                "loss": args.loss,
                "steps": args.steps,
                "seed": args.seed,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
