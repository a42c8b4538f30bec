"""Pseudo-relevance feedback from the candidates' own token matrices (reports/lite.md).

After a first MaxSim pass over a query's candidates, the top ``k`` candidates serve as
feedback, in one of two ways:
  - ``centroid``: each candidate gains ``weight`` times the cosine between its mean token
    vector and the mean of the feedback candidates' (the cluster hypothesis);
  - ``expand``: ColBERT-PRF style. The feedback candidates' tokens are clustered
    (spherical k-means); the clusters rarest among all the candidates (an IDF over the
    candidate set) and not already near a query token become expansion embeddings, each
    matched against every candidate like a query token, and their IDF-weighted mean is
    added with ``weight``.
Everything runs on the token matrices a token store holds: no transformer pass. Shapes:
one query ``(q_tokens, dim)``, its candidates ``(docs, d_tokens, dim)`` with a
``(docs, d_tokens)`` mask, token vectors of unit length.

``--kmeans-seeds`` rescores the expansion setting of ``FeedbackConfig()`` with k-means
started from random draws instead of evenly spaced tokens, to show how much of a gain
rides on the clustering's start.

Every setting of a grid is scored on TREC DL19 (BM25 top-100) and SciFact test (dense
top-100), and the setting is also chosen by 5-fold cross-validation on each set (the same
folds as bench/lite_dl19_kfold.py), so the in-domain gain is not a pick of the best cell.
Usage (after bench/lite_experiment.py has filled the token cache):

    python bench/lite_prf.py --out runs/lite-prf [--reranker models/weights/reranker-default]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bench.lite_experiment import (
    add_experiment_inputs,
    eval_sets,
    kfold,
    paired_ndcg,
    projected_candidates,
)
from evaluation.datasets import data_root
from evaluation.metrics import MetricsResult, evaluate
from models.late_interaction import LateInteractionModel
from training.token_cache import TokenCache


@dataclass(frozen=True)
class FeedbackConfig:
    """The ``expand`` method's settings; the defaults are the best DL19 cell of an
    exploratory pass, so numbers at them are optimistic for DL19 (quote the CV ones)."""

    docs: int = 10
    """How many top first-pass candidates serve as feedback."""
    clusters: int = 24
    """k-means clusters over the feedback candidates' tokens."""
    expansions: int = 10
    """How many clusters become expansion embeddings."""
    weight: float = 0.75
    """Weight of the expansion score against MaxSim divided by the query length."""
    match: float = 0.7
    """A candidate contains a cluster when one of its tokens is at least this similar."""
    near_query: float = 0.9
    """Clusters at least this similar to a query token add nothing new and are skipped."""
    seed: int | None = None
    """k-means starting points: None takes evenly spaced tokens, an int a seeded draw."""

    def __post_init__(self) -> None:
        if min(self.docs, self.clusters, self.expansions) < 1:
            raise ValueError("feedback docs, clusters and expansions must be at least 1")
        if self.weight < 0:
            raise ValueError("feedback weight must not be negative")


def per_token_maxsim(
    query: torch.Tensor, docs: torch.Tensor, doc_mask: torch.Tensor
) -> torch.Tensor:
    """Each query vector's best similarity in each candidate.

    Args:
        query: ``(q_tokens, dim)``.
        docs: ``(n, d_tokens, dim)``.
        doc_mask: ``(n, d_tokens)``.

    Returns:
        ``(n, q_tokens)``; its sum over the last axis is MaxSim. Padding never matters.

    >>> q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    >>> d = torch.tensor([[[0.6, 0.8], [9.0, 9.0]]])
    >>> per_token_maxsim(q, d, torch.tensor([[True, False]])).tolist()
    [[0.6000000238418579, 0.800000011920929]]
    """
    sim = torch.einsum("qe,nte->nqt", query, docs)
    return sim.masked_fill(~doc_mask.bool()[:, None, :], float("-inf")).amax(-1)


def spherical_kmeans(
    points: torch.Tensor, k: int, iterations: int = 10, seed: int | None = None
) -> torch.Tensor:
    """``(min(k, m), dim)`` unit centroids of unit ``points (m, dim)``, started from evenly
    spaced points, or from a random draw with ``seed`` (an empty cluster keeps its centroid).

    >>> p = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> [[round(x, 3) for x in c] for c in spherical_kmeans(p, 2).tolist()]
    [[0.949, 0.316], [-0.316, 0.949]]
    """
    k = min(k, len(points))
    if seed is None:
        start = torch.linspace(0, len(points) - 1, k).round().long()
    else:
        start = torch.randperm(len(points), generator=torch.Generator().manual_seed(seed))[:k]
    centroids = points[start].clone()
    for _ in range(iterations):
        assignment = (points @ centroids.T).argmax(1)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, points)
        filled = torch.bincount(assignment, minlength=k) > 0
        centroids[filled] = torch.nn.functional.normalize(sums[filled], dim=-1)
    return centroids


def expansion_scores(
    query: torch.Tensor,
    docs: torch.Tensor,
    doc_mask: torch.Tensor,
    first_pass: torch.Tensor,
    config: FeedbackConfig,
) -> torch.Tensor:
    """``(n,)`` IDF-weighted mean similarity of each candidate to the expansion embeddings
    drawn from the top candidates by ``first_pass (n,)``; zeros when none qualifies."""
    n = len(first_pass)
    top = first_pass.topk(min(config.docs, n)).indices
    feedback_tokens = docs[top][doc_mask[top].bool()]
    if len(feedback_tokens) == 0:
        return torch.zeros_like(first_pass)
    centroids = spherical_kmeans(feedback_tokens, config.clusters, seed=config.seed)
    similarity = per_token_maxsim(centroids, docs, doc_mask)  # (n, clusters)
    frequency = (similarity >= config.match).float().mean(0)
    idf = torch.log(2.0 / (frequency + 1.0 / n))
    idf = idf * ((centroids @ query.T).amax(1) < config.near_query)
    chosen = idf.topk(min(config.expansions, len(idf))).indices
    weights = idf[chosen]
    if float(weights.sum()) <= 0:
        return torch.zeros_like(first_pass)
    return (similarity[:, chosen] * weights).sum(1) / weights.sum()


def feedback_rescore(
    query: torch.Tensor, docs: torch.Tensor, doc_mask: torch.Tensor, config: FeedbackConfig
) -> torch.Tensor:
    """``(n,)`` MaxSim divided by the query length, plus ``config.weight`` times the
    expansion score. With weight 0 it ranks exactly as MaxSim does.

    >>> q = torch.tensor([[1.0, 0.0]])
    >>> d = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.6, 0.8], [0.0, 0.0]]])
    >>> m = torch.tensor([[True, True], [True, False]])
    >>> feedback_rescore(q, d, m, FeedbackConfig(weight=0.0)).tolist()
    [1.0, 0.6000000238418579]
    """
    first = per_token_maxsim(query, docs, doc_mask).mean(1)
    if config.weight == 0:
        return first
    return first + config.weight * expansion_scores(query, docs, doc_mask, first, config)


@dataclass(frozen=True)
class Feedback:
    """One grid cell: no feedback, the centroid score, or the expansion (``FeedbackConfig``
    with ``docs``, ``weight`` and ``expansions``, k-means started from ``seed``)."""

    mode: str  # "none", "centroid" or "expand"
    docs: int = 0
    weight: float = 0.0
    expansions: int = 0
    seed: int | None = None

    @property
    def name(self) -> str:
        if self.mode == "none":
            return "MaxSim, no feedback"
        extra = f", {self.expansions} expansions" if self.mode == "expand" else ""
        extra += f", k-means seed {self.seed}" if self.seed is not None else ""
        return f"{self.mode}: top {self.docs}, weight {self.weight}{extra}"


def centroid_feedback(
    docs: torch.Tensor, doc_mask: torch.Tensor, first: torch.Tensor, k: int
) -> torch.Tensor:
    """``(n,)`` cosine of each document's mean token vector with the top-``k`` documents'
    (by ``first``, ``(n,)``) mean; ``docs (n, d_tokens, dim)``, ``doc_mask (n, d_tokens)``."""
    means = torch.nn.functional.normalize((docs * doc_mask[..., None]).sum(1), dim=-1)
    top = first.topk(min(k, len(first))).indices
    return means @ torch.nn.functional.normalize(means[top].mean(0), dim=0)


def rescore(
    query: torch.Tensor, docs: torch.Tensor, doc_mask: torch.Tensor, setting: Feedback
) -> torch.Tensor:
    """``(n,)`` scores: MaxSim / query length, plus ``setting.weight`` times the feedback."""
    if setting.mode == "expand":
        config = FeedbackConfig(
            docs=setting.docs,
            expansions=setting.expansions,
            weight=setting.weight,
            seed=setting.seed,
        )
        return feedback_rescore(query, docs, doc_mask, config)
    first = per_token_maxsim(query, docs, doc_mask).mean(1)
    if setting.mode == "centroid":
        return first + setting.weight * centroid_feedback(docs, doc_mask, first, setting.docs)
    return first


def grid() -> list[Feedback]:
    settings = [Feedback("none")]
    settings += [
        Feedback("centroid", k, w) for k in (2, 3, 5, 10) for w in (0.1, 0.25, 0.5, 0.75, 1.0)
    ]
    settings += [
        Feedback("expand", k, w, e) for k in (3, 5, 10) for e in (5, 10) for w in (0.25, 0.5, 0.75)
    ]
    return settings


def cross_validated(
    results: dict[Feedback, MetricsResult], settings: list[Feedback], folds: int, seed: int
) -> tuple[dict[str, float], list[Feedback]]:
    """Per-query nDCG@10 when each fold uses the setting best on the other folds."""
    chosen: list[Feedback] = []
    values: dict[str, float] = {}
    for fold in kfold(results[settings[0]].per_query, folds, seed):
        held_out = set(fold)
        best = max(
            settings,
            key=lambda s: sum(
                v["nDCG@10"] for q, v in results[s].per_query.items() if q not in held_out
            ),
        )
        chosen.append(best)
        values.update({q: results[best].per_query[q]["nDCG@10"] for q in held_out})
    return values, chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/lite-prf"))
    add_experiment_inputs(parser, negatives_run=False)
    parser.add_argument("--reranker", type=Path, help="a MaxSim model folder (default: untrained)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="fold assignment")
    parser.add_argument(
        "--kmeans-seeds",
        default="",
        help="also score the default setting with k-means started from these seeds: 1,2,3",
    )
    args = parser.parse_args()
    if args.reranker is None:
        model = LateInteractionModel.zero_shot()
    else:
        model = LateInteractionModel.load(args.reranker)
    if model.config.scorer.kind != "maxsim":
        parser.error("feedback rescoring needs a MaxSim re-ranker")
    model.eval()
    data = data_root()
    sets = eval_sets(data, args.scifact_index)
    cache = TokenCache.load(args.cache)
    settings = grid()
    default = FeedbackConfig()
    seeded = [
        Feedback("expand", default.docs, default.weight, default.expansions, int(seed))
        for seed in args.kmeans_seeds.split(",")
        if seed
    ]
    report: dict[str, dict] = {}
    for set_name, spec in sets.items():
        prepared = []
        with torch.no_grad():
            for qid, docs, q, q_mask, d, d_mask in projected_candidates(model, cache, spec):
                prepared.append((qid, docs, q[0][q_mask[0].bool()], d, d_mask.bool()))
        results: dict[Feedback, MetricsResult] = {}
        ms_per_query: dict[str, float] = {}
        for setting in settings + seeded:
            started = time.perf_counter()
            run = {
                qid: dict(zip(docs, rescore(q, d, m, setting).tolist(), strict=True))
                for qid, docs, q, d, m in prepared
            }
            ms_per_query[setting.name] = 1000 * (time.perf_counter() - started) / len(prepared)
            results[setting] = evaluate(spec.qrels, run, ["nDCG@10"], query_ids=spec.queries)
            print(
                set_name,
                setting.name,
                f"{results[setting].aggregate['nDCG@10']:.4f}",
                f"{ms_per_query[setting.name]:.1f} ms/query",
                flush=True,
            )
        base = results[settings[0]]
        rows = {s.name: results[s].aggregate["nDCG@10"] for s in settings + seeded}
        cv: dict[str, dict] = {}
        for family in ("centroid", "expand"):
            candidates = [s for s in settings if s.mode in ("none", family)]
            values, chosen = cross_validated(results, candidates, args.folds, args.seed)
            cv_result = MetricsResult(
                {"nDCG@10": sum(values.values()) / len(values)},
                {q: {"nDCG@10": v} for q, v in values.items()},
                len(values),
            )
            cv[family] = {
                "nDCG@10": cv_result.aggregate["nDCG@10"],
                "vs_no_feedback": paired_ndcg(cv_result, base),
                "chosen": [asdict(s) for s in chosen],
            }
            print(set_name, f"{args.folds}-fold CV {family}", json.dumps(cv[family]), flush=True)
        report[set_name] = {"grid": rows, "ms_per_query": ms_per_query, "cross_validated": cv}
    args.out.mkdir(parents=True, exist_ok=True)
    name = "untrained-384d" if args.reranker is None else args.reranker.name
    (args.out / f"results-{name}.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
