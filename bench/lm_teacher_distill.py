"""Distil the Gemma-plus-MaxSim fused teacher into the 128-d MaxSim re-ranker (reports/lite.md).

Fused with untrained MaxSim, the packaged Gemma 270M's query likelihood lifts DL19
(bench/lm_likelihood_fusion.py), but it scores 3 pairs/s on a CPU. This asks whether that
signal survives distillation into the shippable re-ranker over MS MARCO-style queries:

1. **Weight** ``w`` of ``(1 - w)·z(MaxSim) + w·z(LM)``: ``--weight``, by default 0.2, the
   weight every DL19 cross-validation fold chose in bench/lm_likelihood_fusion.py (on its
   four other folds). The student trains on no DL19 query, so training it once with 0.2 *is*
   the nested 5-fold cross-validation: each fold's student would be this same model. For
   reference the curve over ``w`` on the MS MARCO training triples (web queries, not DL19) is
   printed too: each of the 97 non-shot triples' queries re-ranks its positive, its negative
   and BM25's top ``--triples-depth`` over the MS MARCO passages here.
2. **Training queries**, each with its source passage as the positive and BM25's next
   ``--negatives`` passages of the same pool as negatives (all scored by the teacher):
   - ``msmarco-synth``: Gemma hard-prompt queries for the MS MARCO training passages here,
     BM25-consistency-filtered (reports/softsrv.md; 515);
   - ``dl19-synth``: the same for DL19-pool passages (598; transductive: that pool holds the
     passages first-stage runs retrieved for the DL19 queries, though no DL19 query or
     judgment is used).
3. **Arms**, same data, seed and budget: listwise CE on the synthetic positives (``ce``)
   against CE plus KL to the teacher (``kl``), a 128-d MaxSim on frozen MiniLM states; each
   re-ranks DL19 (BM25 top 100) and SciFact test (dense top 100).

LM scores are cached per set in ``--out`` (resumable). Usage (LM folder from
``python -m models.causal_lm runs/gemma3-270m``; inputs from bench/msmarco_synthetic_inputs.py
and bench/filter_pairs.py, see reports/softsrv.md)::

    python bench/lm_teacher_distill.py --out runs/lm-distill [--seed 0]
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import torch

from bench.harness import write_json
from bench.lite_experiment import (
    MEASURES,
    EvalSet,
    add_experiment_inputs,
    cache_set_states,
    compare_arms,
    eval_sets,
    evaluate_on_sets,
    paired_ndcg,
    rerank_from_cache,
    trained_model,
)
from bench.lm_likelihood_fusion import WEIGHTS, fused_run, lm_scores
from bench.msmarco_synthetic_inputs import repair_mojibake
from evaluation.datasets import data_root
from evaluation.metrics import MetricsResult, evaluate, format_table
from index.readers import read_corpus
from index.readers.trec import Run, write_run
from models.causal_lm import load_causal_lm
from models.late_interaction import LateInteractionModel
from models.lite import ScorerConfig
from training.consistency import bm25_corpus_first_stage
from training.lite_config import LiteTrainConfig
from training.run_config import QrelsSource
from training.synthetic_pairs import qrels_path, read_pairs
from training.token_cache import TokenCache

SYNTHETIC = {
    "msmarco-synth": ("train-hard-bm25top10.jsonl", "train-passages.jsonl"),
    "dl19-synth": ("dl19-hard-bm25top10.jsonl", "dl19-run-corpus.jsonl"),
}
"""Training sets: generated pairs and the passage pool they came from, under ``--synth``."""


def pool_candidates(
    queries: dict[str, str], pool: Path, depth: int, must: dict[str, list[str]]
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Each query's ``must`` passages, then BM25's top passages of ``pool`` (not already
    listed) up to ``len(must) + depth`` candidates; and the candidates' texts."""
    docs = {d.id: d.full_text for d in read_corpus(pool)}
    search = bm25_corpus_first_stage(pool)
    ids = list(queries)
    hits = search([queries[q] for q in ids], depth + max(len(m) for m in must.values()))
    top: dict[str, list[str]] = {}
    for qid, row in zip(ids, hits, strict=True):
        fixed = must[qid]
        top[qid] = fixed + [d for d in row if d not in fixed][:depth]
    needed = {d for row in top.values() for d in row}
    return top, {d: docs[d] for d in needed}


def rank_scores(top: dict[str, list[str]]) -> Run:
    """A run that keeps each query's candidate order: scores 0, -1, -2 ...

    >>> rank_scores({"q": ["pos", "neg"]})
    {'q': {'pos': -0.0, 'neg': -1.0}}
    """
    return {q: {d: -float(r) for r, d in enumerate(row)} for q, row in top.items()}


def triples_set(data: Path, synth: Path, depth: int, shots: int = 3) -> EvalSet:
    """The MS MARCO training triples after the ``shots`` used as generation shots: query,
    positive (relevant), negative and BM25's top ``depth`` over ``synth/train-passages.jsonl``."""
    sample = data / "msmarco-train-triples-sample" / "triples.train.sample100.tsv"
    pool = synth / "train-passages.jsonl"
    ids_by_text = {d.full_text: d.id for d in read_corpus(pool)}
    queries, qrels, must = {}, {}, {}
    for i, line in enumerate(sample.read_text("utf-8").splitlines()[shots:], start=shots):
        query, positive, negative = (repair_mojibake(p) for p in line.split("\t"))
        qid = f"triple-{i}"
        queries[qid] = query
        qrels[qid] = {ids_by_text[positive]: 1}
        must[qid] = [ids_by_text[positive], ids_by_text[negative]]
    top, texts = pool_candidates(queries, pool, depth, must)
    return EvalSet(queries, qrels, rank_scores(top), top, texts)


def synthetic_set(pairs: Path, pool: Path, negatives: int) -> EvalSet:
    """Kept generated pairs: the source passage is the positive, then BM25 negatives."""
    kept = read_pairs(pairs)
    queries = {p.query_id: p.query for p in kept}
    qrels = {p.query_id: {p.doc_id: 1} for p in kept}
    top, texts = pool_candidates(queries, pool, negatives, {p.query_id: [p.doc_id] for p in kept})
    return EvalSet(queries, qrels, rank_scores(top), top, texts)


def distillation_source(
    spec: EvalSet, teacher: Run, pairs: Path, pool: Path, negatives: int, out: Path
) -> QrelsSource:
    """A training source over generated ``pairs`` (the pair file is its queries file, the
    qrels beside it its judgments): ``spec``'s candidates (the source passage, then up to
    ``negatives`` others) and ``teacher``'s scores, both written to ``out`` as runs."""
    out.mkdir(parents=True, exist_ok=True)
    write_run(spec.run, out / "candidates.trec", tag="bm25-pool")
    write_run(teacher, out / "teacher.trec", tag="maxsim+lm")
    return QrelsSource(
        queries=pairs,
        qrels=qrels_path(pairs),
        corpus=pool,
        negatives_run=out / "candidates.trec",
        negative_depth=negatives + 1,
        negatives_per_query=negatives,
        teacher_run=out / "teacher.trec",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lm", default="runs/gemma3-270m")
    parser.add_argument("--out", type=Path, default=Path("runs/lm-distill"))
    parser.add_argument("--synth", type=Path, default=Path("runs/msmarco-synth"))
    parser.add_argument("--weight", type=float, default=0.2, help="LM weight in the teacher")
    parser.add_argument("--triples-depth", type=int, default=8)
    parser.add_argument("--negatives", type=int, default=5)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=20, help="LM scoring batch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--train-sets",
        nargs="+",
        default=[*SYNTHETIC, "both"],
        choices=[*SYNTHETIC, "both"],
        help="which training sets get a ce and a kl arm",
    )
    parser.add_argument("--score-only", action="store_true", help="stop after LM scoring")
    add_experiment_inputs(parser, negatives_run=False)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    data, synth = data_root(), args.synth
    sets = {"triples": triples_set(data, synth, args.triples_depth)}
    for name, (pairs, pool) in SYNTHETIC.items():
        sets[name] = synthetic_set(synth / pairs, synth / pool, args.negatives)
    load_lm = functools.cache(lambda: load_causal_lm(args.lm, device="cpu"))
    lm_runs = {
        name: lm_scores(load_lm, spec, args.out / f"lm-scores-{name}.json", args.batch_size)
        for name, spec in sets.items()
    }
    if args.score_only:
        return
    load_lm.cache_clear()
    cache = TokenCache.load(args.cache)
    base = LateInteractionModel.zero_shot()
    maxsim: dict[str, Run] = {}
    cached = len(cache)
    for name, spec in sets.items():
        cache_set_states(cache, base, spec, name)
        maxsim[name], _ = rerank_from_cache(base, cache, spec)
    if len(cache) > cached:
        cache.save(args.cache)

    def metrics(spec: EvalSet, run: Run) -> MetricsResult:
        return evaluate(spec.qrels, run, MEASURES, query_ids=spec.queries)

    rows: dict[str, dict[str, float]] = {}
    curves: dict[str, dict[float, float]] = {}
    for name, spec in sets.items():
        rows[f"{name} | MaxSim 384-d"] = metrics(spec, maxsim[name]).aggregate
        rows[f"{name} | LM likelihood"] = metrics(spec, lm_runs[name]).aggregate
        curves[name] = {
            w: metrics(spec, fused_run(maxsim[name], lm_runs[name], w)).aggregate["nDCG@10"]
            for w in WEIGHTS
        }
    weight = args.weight
    teachers = {name: fused_run(maxsim[name], lm_runs[name], weight) for name in sets}
    for name in sets:
        rows[f"{name} | fused w={weight:g}"] = metrics(sets[name], teachers[name]).aggregate
    sources = {
        name: distillation_source(
            sets[name],
            teachers[name],
            synth / pairs,
            synth / pool,
            args.negatives,
            args.out / name,
        )
        for name, (pairs, pool) in SYNTHETIC.items()
    }
    evaluation = eval_sets(data, args.scifact_index)
    results: dict[tuple[str, str], MetricsResult] = {}
    base_results = evaluate_on_sets(base, cache, evaluation)
    for set_name, result in base_results.items():
        rows[f"{set_name} | MaxSim 384-d untrained"] = result.aggregate
    arms = {
        f"{data_name} {loss}": (data_name, loss)
        for data_name in args.train_sets
        for loss in ["ce", "kl"]
    }
    for arm, (data_name, loss) in arms.items():
        data_sources = list(sources.values()) if data_name == "both" else [sources[data_name]]
        config = LiteTrainConfig(
            out=args.out / f"{data_name}-{loss}-d{args.dim}-s{args.seed}",
            data=data_sources,
            dim=args.dim,
            scorer=ScorerConfig(kind="maxsim"),
            negatives=args.negatives,
            loss=loss,
            max_steps=args.steps,
            seed=args.seed,
            cache=args.cache,
            eval_every=50,
            patience=4,
        )
        model = trained_model(config, show_progress=False, token_cache=cache)
        for set_name, result in evaluate_on_sets(model, cache, evaluation).items():
            results[(set_name, arm)] = result
            rows[f"{set_name} | {arm}"] = result.aggregate
    print(format_table(rows, MEASURES))
    print("triples nDCG@10 by w:", " ".join(f"{w:g}:{v:.4f}" for w, v in curves["triples"].items()))
    print(f"teacher weight: {weight:g}")
    tests = {}
    for data_name in args.train_sets:
        tests[f"{data_name} kl - ce"] = compare_arms(
            results, evaluation, f"{data_name} kl", f"{data_name} ce"
        )
        tests[f"{data_name} kl - untrained"] = {
            s: paired_ndcg(results[(s, f"{data_name} kl")], base_results[s]) for s in evaluation
        }
    write_json(
        args.out / f"results-d{args.dim}-s{args.seed}.json",
        {
            "metrics": rows,
            "ndcg10_by_weight": curves,
            "weight": weight,
            "tests": tests,
            "args": vars(args),
        },
    )


if __name__ == "__main__":
    main()
