"""Does distilling from untrained MaxSim keep DL19 while training on SciFact? (reports/lite.md)

Trained on SciFact, the 128-d MaxSim re-ranker gains on SciFact and loses a little on DL19
against untrained 384-d MaxSim. This trains two 128-d MaxSim re-rankers on SciFact train
(dense hard negatives; no MS MARCO triples, which carry no teacher scores) with the same
seed and budget:
  - ``ce``: listwise softmax cross-entropy;
  - ``ce+kl``: the same plus KL distillation from untrained 384-d MaxSim's scores over each
    query's candidates (written as a teacher run first), which pulls the projection toward
    the zero-shot ranking that does well on DL19.
Both then re-rank the DL19 BM25 top-100 and the SciFact test dense top-100 from cached
states. Usage:

    python bench/lite_self_distill.py --out runs/lite-self-distill [--seed 0] [--weight 1.0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bench.lite_experiment import (
    MEASURES,
    EvalSet,
    add_experiment_inputs,
    cache_set_states,
    compare_arms,
    eval_sets,
    evaluate_on_sets,
    rerank_from_cache,
    trained_model,
)
from evaluation.datasets import data_root
from evaluation.metrics import MetricsResult, format_table
from index.readers import read_corpus, read_qrels, read_queries, read_run
from index.readers.trec import write_run
from models.late_interaction import LateInteractionModel
from models.lite import ScorerConfig
from training.lite_config import LiteTrainConfig
from training.run_config import QrelsSource
from training.token_cache import TokenCache


@torch.no_grad()
def zero_shot_teacher(data: Path, negatives_run: Path, cache: TokenCache, out: Path) -> Path:
    """A TREC run of untrained 384-d MaxSim over each SciFact train query's candidates
    (its dense top 50 and its judged positives), from cached states."""
    sci = data / "beir-scifact"
    queries = read_queries(sci / "queries.jsonl", "train")
    qrels = read_qrels(sci / "qrels" / "train.tsv")
    dense = read_run(negatives_run)
    base = LateInteractionModel.zero_shot()
    pools = {q: set(dense.get(q, {})) | set(qrels.get(q, {})) for q in queries}
    needed = {d for pool in pools.values() for d in pool}
    texts = {doc.id: doc.full_text for doc in read_corpus(sci) if doc.id in needed}
    top = {q: sorted(d for d in pools[q] if d in texts) for q in queries}
    spec = EvalSet(queries, qrels, dense, top, texts)
    cache_set_states(cache, base, spec, "teacher")
    run, _ = rerank_from_cache(base, cache, spec)
    write_run(run, out, tag="maxsim-untrained-384d")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/lite-self-distill"))
    add_experiment_inputs(parser, negatives_run=True)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weight", type=float, default=1.0, help="KL weight against CE")
    args = parser.parse_args()
    data = data_root()
    cache = TokenCache.load(args.cache)
    teacher = args.out / "teacher-maxsim-untrained.trec"
    if not teacher.is_file():
        zero_shot_teacher(data, args.negatives_run, cache, teacher)
    sci = data / "beir-scifact"
    source = QrelsSource(
        queries=sci / "queries.jsonl",
        qrels=sci / "qrels" / "train.tsv",
        corpus=sci,
        negatives_run=args.negatives_run,
        split="train",
        teacher_run=teacher,
    )
    arms = {"ce": {"loss": "ce"}, "ce+kl": {"loss": "kl", "distill_weight": args.weight}}
    sets = eval_sets(data, args.scifact_index)
    rows: dict[str, dict[str, float]] = {}
    results: dict[tuple[str, str], MetricsResult] = {}
    for arm, loss in arms.items():
        suffix = "" if arm == "ce" else f"-w{args.weight:g}"
        config = LiteTrainConfig(
            out=args.out / f"{arm}{suffix}-s{args.seed}",
            data=[source],
            dim=128,
            scorer=ScorerConfig(kind="maxsim"),
            max_steps=args.steps,
            seed=args.seed,
            cache=args.cache,
            eval_every=100,
            patience=4,
            **loss,
        )
        model = trained_model(config, token_cache=cache)
        for set_name, result in evaluate_on_sets(model, cache, sets).items():
            results[(set_name, arm)] = result
            rows[f"{set_name} | {arm}{suffix}"] = result.aggregate
    print(format_table(rows, MEASURES))
    tests = compare_arms(results, sets, "ce+kl", "ce")
    (args.out / f"results-w{args.weight:g}-s{args.seed}.json").write_text(
        json.dumps({"metrics": rows, "kl_vs_ce": tests, "args": vars(args)}, indent=2, default=str)
    )


if __name__ == "__main__":
    main()
