"""Cheap second signals fused with untrained MaxSim: do they lift DL19? (reports/lite.md)

Untrained 384-d MaxSim over MiniLM tokens is fused, per query on z-scores,

    fused = (1 - w) · z(MaxSim) + w · z(other)

with two signals that cost nothing at serving time:
  - ``first-stage``: the first stage's own score (BM25 on DL19, the dense cosine on
    SciFact), what a hybrid ``/v1/search`` could add;
  - ``pooled-cosine``: the cosine of the mean-pooled token states (the dual-encoder view of
    the same forward pass; queries cut at 32 tokens and passages at 128, as for MaxSim);
  - ``shipped-default``: the shipped re-ranker's score (MaxSim over its trained 128-d
    projection, first 128 tokens), a score-level ensemble of the trained and untrained
    views that would need both token stores to serve.

``w`` is chosen on the held-out SciFact-train queries (dense top 50), never on DL19, then
scored on DL19 (BM25 top 100) and SciFact test (dense top 100) with a paired t-test against
MaxSim. DL19 5-fold cross-validation (``w`` chosen on four folds, scored on the fifth)
gives the in-domain number, and each set's curve over ``w`` is kept for reading. Needs the
token-state cache and SciFact index of bench/lite_experiment.py. Usage::

    python bench/maxsim_fusion.py --out runs/maxsim-fusion
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import torch

from bench.harness import write_json
from bench.lite_experiment import (
    DEV_SET,
    MEASURES,
    EvalSet,
    cache_set_states,
    cross_validated_choice,
    ndcg_at_10,
    paired_ndcg,
    rerank_from_cache,
    zero_shot_study,
)
from bench.lm_likelihood_fusion import fused_run
from evaluation.metrics import MetricsResult, evaluate, format_table
from index.readers.trec import Run
from models.late_interaction import LateInteractionModel
from training.token_cache import TokenCache

WEIGHTS = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
DEFAULT_MODEL = Path("models/weights/reranker-default")


@torch.no_grad()
def pooled_cosine_run(cache: TokenCache, spec: EvalSet, q_len: int, d_len: int) -> Run:
    """Cosine of mean-pooled cached states, query against each candidate."""

    def pooled(texts: list[str], max_length: int) -> torch.Tensor:
        states, mask = cache.batch(texts, max_length)  # (n, tokens, hidden), (n, tokens)
        weights = mask.float()[..., None]
        mean = (states * weights).sum(1) / weights.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(mean, dim=-1)  # (n, hidden)

    run: Run = {}
    for qid, text in spec.queries.items():
        docs = spec.top[qid]
        if docs:
            scores = pooled([spec.texts[d] for d in docs], d_len) @ pooled([text], q_len)[0]
            run[qid] = dict(zip(docs, scores.tolist(), strict=True))
    return run


def first_stage_run(spec: EvalSet) -> Run:
    """The first stage's scores of each query's candidates."""
    return {q: {d: spec.run[q][d] for d in spec.top[q]} for q in spec.queries if spec.top[q]}


def cross_validated_weight_run(spec: EvalSet, maxsim: Run, other: Run) -> tuple[Run, list[float]]:
    """The fused run with ``w`` chosen on the other folds, per held-out fold."""
    return cross_validated_choice(spec, WEIGHTS, partial(fused_run, maxsim, other))


def best_weight(spec: EvalSet, maxsim: Run, other: Run) -> float:
    """The weight with the best nDCG@10 on ``spec`` (ties: the smaller weight)."""
    return max(WEIGHTS, key=lambda w: (ndcg_at_10(spec, fused_run(maxsim, other, w)), -w))


def main() -> None:
    study = zero_shot_study(__doc__.split("\n")[0], Path("runs/maxsim-fusion"))
    args, sets, cache, tune = study.args, study.sets, study.cache, DEV_SET
    base = LateInteractionModel.zero_shot()
    shipped = LateInteractionModel.load(DEFAULT_MODEL)
    q_len, d_len = base.config.q_len, base.config.d_len

    def metrics(spec: EvalSet, run: Run) -> MetricsResult:
        return evaluate(spec.qrels, run, MEASURES, query_ids=spec.queries)

    maxsim: dict[str, Run] = {}
    signals: dict[str, dict[str, Run]] = {
        "first-stage": {},
        "pooled-cosine": {},
        "shipped-default": {},
    }
    for name, spec in sets.items():
        cache_set_states(cache, base, spec, name)
        maxsim[name], _ = rerank_from_cache(base, cache, spec)
        signals["first-stage"][name] = first_stage_run(spec)
        signals["pooled-cosine"][name] = pooled_cosine_run(cache, spec, q_len, d_len)
        signals["shipped-default"][name], _ = rerank_from_cache(shipped, cache, spec)

    rows: dict[str, dict[str, float]] = {}
    curves: dict[str, dict[str, dict[float, float]]] = {}
    chosen: dict[str, float] = {}
    tests: dict[str, dict[str, float]] = {}
    for name, spec in sets.items():
        rows[f"{name} | MaxSim 384-d"] = metrics(spec, maxsim[name]).aggregate
    for signal, runs in signals.items():
        weight = chosen[signal] = best_weight(sets[tune], maxsim[tune], runs[tune])
        curves[signal] = {}
        for name, spec in sets.items():
            rows[f"{name} | {signal} alone"] = metrics(spec, runs[name]).aggregate
            result = metrics(spec, fused_run(maxsim[name], runs[name], weight))
            rows[f"{name} | MaxSim + {signal}, w={weight:g} (from {tune})"] = result.aggregate
            if name != tune:
                tests[f"{name} {signal}"] = paired_ndcg(result, metrics(spec, maxsim[name]))
            curves[signal][name] = {
                w: ndcg_at_10(spec, fused_run(maxsim[name], runs[name], w)) for w in WEIGHTS
            }
        dl19 = sets["dl19-bm25"]
        cv_run, cv_weights = cross_validated_weight_run(
            dl19, maxsim["dl19-bm25"], runs["dl19-bm25"]
        )
        cv = metrics(dl19, cv_run)
        rows[f"dl19-bm25 | MaxSim + {signal}, w by 5-fold CV {cv_weights}"] = cv.aggregate
        tests[f"dl19-bm25 {signal} 5-fold CV"] = paired_ndcg(cv, metrics(dl19, maxsim["dl19-bm25"]))

    print(format_table(rows, MEASURES))
    for signal, by_set in curves.items():
        for name, curve in by_set.items():
            points = " ".join(f"{w:g}:{v:.4f}" for w, v in curve.items())
            print(f"{signal} {name} nDCG@10 by w: {points}")
    for label, t in tests.items():
        print(f"fused ({label}) - MaxSim:", json.dumps(t))
    write_json(
        args.out / "results.json",
        {
            "metrics": rows,
            "ndcg10_by_weight": curves,
            "weights_from_dev": chosen,
            "fused_vs_maxsim": tests,
            "args": vars(args),
        },
    )


if __name__ == "__main__":
    main()
