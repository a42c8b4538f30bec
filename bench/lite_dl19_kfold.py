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
from pathlib import Path

from bench.harness import write_json
from bench.lite_experiment import (
    MEASURES,
    EvalSet,
    add_experiment_inputs,
    cache_set_states,
    eval_sets,
    kfold,
    rerank_from_cache,
    trained_model,
)
from evaluation.datasets import data_root
from evaluation.metrics import evaluate, format_table
from index.readers.trec import Run
from models.late_interaction import LateInteractionModel
from models.lite import ScorerConfig, ScorerKind
from training.lite_config import LiteTrainConfig
from training.run_config import QrelsSource
from training.token_cache import TokenCache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/lite-kfold"))
    add_experiment_inputs(parser, negatives_run=False)
    parser.add_argument("--kinds", default="maxsim,sorted")
    parser.add_argument(
        "--teacher",
        default="SPLADE_P_P_ENSEMBLE_DISTIL",
        help="a DL19 run name (run.NAME.top100.trec in the data) or a TREC run file",
    )
    parser.add_argument("--distill-weight", type=float, default=1.0)
    parser.add_argument("--tag", default="", help="suffix for the per-fold output folders")
    parser.add_argument(
        "--fit-all",
        action="store_true",
        help="also train on all 43 queries and score them: how well the model can fit, "
        "not a held-out result",
    )
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
    teacher = Path(args.teacher)
    if not teacher.is_file():
        teacher = dl19 / f"run.{args.teacher}.top100.trec"
    args.out.mkdir(parents=True, exist_ok=True)
    cache = TokenCache.load(args.cache) if args.cache.is_file() else TokenCache()
    base = LateInteractionModel.zero_shot()
    cache_set_states(cache, base, spec, "DL19")  # the held-out folds are scored from it

    def train_and_rerank(kind: ScorerKind, name: str, train_ids: list[str], scored: EvalSet) -> Run:
        """Train on ``train_ids``' judgments (and teacher), re-rank ``scored``'s queries."""
        ids_file = args.out / f"{name}-train-qids.txt"
        ids_file.write_text("\n".join(train_ids) + "\n")
        source = QrelsSource(
            queries=dl19 / "queries.tsv",
            qrels=dl19 / "qrels.trec",
            corpus=dl19 / "corpus.jsonl",
            negatives_run=dl19 / "run.BM25.top100.trec",
            negative_depth=100,
            negatives_per_query=64,
            min_positive_grade=2,
            teacher_run=teacher if args.loss != "ce" else None,
            query_ids_file=ids_file,
        )
        config = LiteTrainConfig(
            out=args.out / f"{kind}-{args.loss}{args.tag}-{name}",
            data=[source],
            dim=args.dim,
            scorer=ScorerConfig(kind=kind),
            loss=args.loss,
            distill_weight=args.distill_weight,
            max_steps=args.steps,
            dev_fraction=0.0,
            eval_every=0,
            patience=None,
            seed=args.seed,
            cache=args.cache,
            warmup_steps=30,
        )
        model = trained_model(config, show_progress=False, token_cache=cache)
        run, _ = rerank_from_cache(model, cache, scored)
        return run

    rows: dict[str, dict[str, float]] = {}
    for kind in args.kinds.split(","):
        merged: Run = {}
        for f, held_out in enumerate(folds):
            train_ids = [q for q in qids if q not in held_out]
            merged |= train_and_rerank(kind, f"fold{f}", train_ids, spec.restricted(held_out))
        result = evaluate(spec.qrels, merged, MEASURES, query_ids=spec.queries)
        rows[f"{kind} ({args.loss}{args.tag}, {args.folds}-fold CV)"] = result.aggregate
        if args.fit_all:
            fit = train_and_rerank(kind, "all", qids, spec)
            rows[f"{kind} ({args.loss}{args.tag}, trained and scored on all {len(qids)})"] = (
                evaluate(spec.qrels, fit, MEASURES, query_ids=spec.queries).aggregate
            )
    run, _ = rerank_from_cache(base, cache, spec)
    rows["maxsim untrained 384-d"] = evaluate(
        spec.qrels, run, MEASURES, query_ids=spec.queries
    ).aggregate
    print(format_table(rows, MEASURES))
    write_json(
        args.out / f"results{args.tag}.json",
        {
            "metrics": rows,
            "folds": folds,
            "teacher": str(teacher),
            "distill_weight": args.distill_weight,
            "dim": args.dim,
            "loss": args.loss,
            "steps": args.steps,
            "seed": args.seed,
        },
    )


if __name__ == "__main__":
    main()
