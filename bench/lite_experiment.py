"""LITE vs MaxSim vs cosine on one frozen backbone, same data and budget (reports/lite.md).

Trains each scorer with ``training.lite_job.train_lite`` on SciFact train (dense hard
negatives) plus the MS MARCO triples sample, never on the evaluation queries, then re-ranks
  - TREC DL19: the BM25 top-100 (43 queries, graded NIST judgments),
  - SciFact test: the dual encoder's top-100 (300 queries),
from cached backbone token states (the same numbers the token store gives), and prints a
table. Usage:

    python bench/lite_experiment.py --out runs/lite-exp [--steps 1000] [--seed 0]

It needs ../shared/data (or LOUPE_DATA_DIR) and a SciFact index built with
``loupe index build --corpus $DATA/beir-scifact --out runs/scifact-index``.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import torch

from evaluation.compare import compare
from evaluation.datasets import data_root
from evaluation.metrics import MetricsResult, evaluate, format_table
from index.readers import read_corpus, read_qrels, read_queries, read_run
from index.readers.trec import Qrels, Run, ranked
from index.searcher import Searcher
from models.late_interaction import LateInteractionModel
from models.lite import ScorerConfig
from training.batches import load_examples
from training.examples import split_by_query
from training.lite_config import LiteTrainConfig
from training.lite_job import train_lite
from training.run_config import QrelsSource, SyntheticSource, TriplesSource
from training.token_cache import TokenCache

MEASURES = ["nDCG@10", "RR@10", "RR(rel=2)@10", "R@100"]
T = TypeVar("T")


def add_experiment_inputs(parser: argparse.ArgumentParser, *, negatives_run: bool) -> None:
    """The inputs bench/lite_experiment.py leaves behind that the follow-up scripts reuse:
    the frozen MiniLM's token-state cache, the SciFact index and (``negatives_run``) the
    SciFact-train hard-negative run."""
    parser.add_argument("--cache", type=Path, default=Path("runs/lite-exp/token-cache.npz"))
    parser.add_argument("--scifact-index", type=Path, default=Path("runs/scifact-index"))
    if negatives_run:
        parser.add_argument(
            "--negatives-run",
            type=Path,
            default=Path("runs/lite-exp/scifact-train-dense50.trec"),
        )


def trained_model(
    config: LiteTrainConfig,
    show_progress: bool = True,
    token_cache: TokenCache | None = None,
) -> LateInteractionModel:
    """``config``'s best checkpoint, trained first unless its run finished (``summary.json``
    exists); an interrupted run resumes from its checkpoint. ``token_cache``: the bench's
    loaded cache, so training does not read a second copy from ``config.cache``."""
    if not (config.out / "summary.json").is_file():
        train_lite(config, show_progress=show_progress, token_cache=token_cache)
    return LateInteractionModel.load(config.out / "best")


def kfold(query_ids: Iterable[str], folds: int, seed: int) -> list[list[str]]:
    """``folds`` held-out groups of the queries: sorted, shuffled with ``seed``, dealt out.

    >>> kfold(["q3", "q1", "q2", "q4"], 2, seed=0)
    [['q3', 'q2'], ['q1', 'q4']]
    """
    qids = sorted(query_ids)
    random.Random(seed).shuffle(qids)
    return [qids[i::folds] for i in range(folds)]


def cross_validated_run(
    query_ids: Iterable[str],
    choices: Sequence[T],
    run_for: Callable[[T], Run],
    score: Callable[[Run, list[str]], float],
    folds: int = 5,
    seed: int = 0,
) -> tuple[Run, list[T]]:
    """k-fold choice of a setting: for each held-out fold (``kfold``), the choice whose run
    ``score``s best on the other folds' queries (ties: the earliest in ``choices``), and that
    run's held-out queries. Returns the merged run and each fold's choice.

    >>> up, down = {"a": {"x": 1.0}, "b": {"x": 2.0}}, {"a": {"x": 3.0}, "b": {"x": 0.0}}
    >>> runs = {"up": up, "down": down}
    >>> score = lambda run, qs: sum(run[q]["x"] for q in qs)
    >>> cross_validated_run(["a", "b"], ["up", "down"], runs.__getitem__, score, folds=2)
    ({'a': {'x': 1.0}, 'b': {'x': 0.0}}, ['up', 'down'])
    """
    merged: Run = {}
    chosen: list[T] = []
    all_ids = sorted(query_ids)
    for held_out in kfold(all_ids, folds, seed):
        train = [q for q in all_ids if q not in held_out]
        best = max(choices, key=lambda choice: score(run_for(choice), train))
        chosen.append(best)
        run = run_for(best)
        merged |= {q: run[q] for q in held_out if q in run}
    return merged, chosen


def training_sources(
    data: Path, negatives: Path
) -> list[TriplesSource | QrelsSource | SyntheticSource]:
    """The re-ranker's real training data: SciFact train judgments with hard negatives from
    ``negatives`` (a TREC run), and the MS MARCO triples sample."""
    sci = data / "beir-scifact"
    return [
        QrelsSource(
            queries=sci / "queries.jsonl",
            qrels=sci / "qrels" / "train.tsv",
            corpus=sci,
            negatives_run=negatives,
            split="train",
        ),
        TriplesSource(path=data / "msmarco-train-triples-sample" / "triples.train.sample100.tsv"),
    ]


@dataclass(frozen=True)
class EvalSet:
    """One evaluation set: queries, judgments, each query's first-stage candidates (best
    first) and the candidates' texts."""

    queries: dict[str, str]
    qrels: Qrels
    run: Run
    top: dict[str, list[str]]
    texts: dict[str, str]

    @classmethod
    def from_run(
        cls, queries: dict[str, str], qrels: Qrels, run: Run, corpus: Path, depth: int
    ) -> EvalSet:
        """The set re-ranking ``run``'s top ``depth`` per query, texts read from ``corpus``."""
        top = {q: [d for d, _ in ranked(run.get(q, {}), depth)] for q in queries}
        needed = {d for docs in top.values() for d in docs}
        texts = {d.id: d.full_text for d in read_corpus(corpus) if d.id in needed}
        return cls(queries, qrels, run, top, texts)

    def restricted(self, query_ids: Iterable[str]) -> EvalSet:
        """The same set with only ``query_ids``' queries (a fold)."""
        return replace(self, queries={q: self.queries[q] for q in query_ids})


def scifact_dev_set(
    data: Path, negatives_run: Path, dev_fraction: float = 0.1, seed: int = 0, depth: int = 50
) -> EvalSet:
    """The held-out SciFact-train queries of ``training_sources`` (the queries LITE training
    selects its checkpoint on), re-ranking their dense top ``depth`` from ``negatives_run``."""
    sci = data / "beir-scifact"
    examples = load_examples(training_sources(data, negatives_run))
    _, dev = split_by_query(examples, dev_fraction, seed)
    dev_ids = sorted({e.query_id for e in dev if e.query_id is not None})
    queries = read_queries(sci / "queries.jsonl", "train")
    qrels = read_qrels(sci / "qrels" / "train.tsv")
    run = read_run(negatives_run)
    return EvalSet.from_run({q: queries[q] for q in dev_ids}, qrels, run, sci, depth)


def dl19_bm25_set(data: Path, depth: int = 100) -> EvalSet:
    """TREC DL19 (43 queries, graded judgments) re-ranking BM25's top ``depth``."""
    dl19 = data / "trec-dl-2019-passage"
    return EvalSet.from_run(
        read_queries(dl19 / "queries.tsv"),
        read_qrels(dl19 / "qrels.trec"),
        read_run(dl19 / "run.BM25.top100.trec"),
        dl19 / "corpus.jsonl",
        depth,
    )


def scifact_test_set(data: Path, scifact_index: Path, depth: int = 100) -> EvalSet:
    """SciFact test (300 queries) re-ranking the dense top ``depth`` from ``scifact_index``."""
    sci = data / "beir-scifact"
    queries = read_queries(sci / "queries.jsonl", "test")
    ids = list(queries)
    hits = Searcher.open(scifact_index).search([queries[q] for q in ids], depth)
    dense = {q: {h.document.id: h.score for h in row} for q, row in zip(ids, hits, strict=True)}
    return EvalSet.from_run(queries, read_qrels(sci / "qrels" / "test.tsv"), dense, sci, depth)


def eval_sets(data: Path, scifact_index: Path, depth: int = 100) -> dict[str, EvalSet]:
    """The two evaluation sets: DL19's BM25 top ``depth`` and SciFact test's dense top
    ``depth`` (from ``scifact_index``)."""
    return {
        "dl19-bm25": dl19_bm25_set(data, depth),
        "scifact-test-dense": scifact_test_set(data, scifact_index, depth),
    }


DEV_SET = "scifact-dev-dense50"
"""The held-out SciFact-train queries: where zero-shot studies choose their settings."""


def held_out_sets(data: Path, negatives_run: Path, scifact_index: Path) -> dict[str, EvalSet]:
    """``DEV_SET`` (its dense top 50 from ``negatives_run``), where a study chooses its
    setting, then the two evaluation sets of :func:`eval_sets` it is scored on."""
    return {DEV_SET: scifact_dev_set(data, negatives_run), **eval_sets(data, scifact_index)}


def ndcg_at_10(spec: EvalSet, run: Run, query_ids: Iterable[str] | None = None) -> float:
    """nDCG@10 of ``run`` over ``spec``'s queries (or ``query_ids``, such as a fold's)."""
    wanted = list(spec.queries if query_ids is None else query_ids)
    return evaluate(spec.qrels, run, ["nDCG@10"], query_ids=wanted).aggregate["nDCG@10"]


def cross_validated_choice(
    spec: EvalSet, choices: Sequence[T], run_for: Callable[[T], Run]
) -> tuple[Run, list[T]]:
    """:func:`cross_validated_run` over ``spec``'s own queries (5 folds, seed 0), each fold's
    setting the one with the best nDCG@10 on the other folds."""
    return cross_validated_run(
        spec.queries, choices, run_for, lambda run, train: ndcg_at_10(spec, run, train)
    )


@dataclass(frozen=True)
class ZeroShotStudy:
    """What a study without training starts from: its arguments (``--out`` made), the data
    folder, :func:`held_out_sets` and the frozen MiniLM's token-state cache."""

    args: argparse.Namespace
    data: Path
    sets: dict[str, EvalSet]
    cache: TokenCache


def zero_shot_study(description: str, default_out: Path) -> ZeroShotStudy:
    """Parse a zero-shot study's command line (``--out`` and :func:`add_experiment_inputs`)
    and load its inputs, on two threads."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, default=default_out)
    add_experiment_inputs(parser, negatives_run=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    data = data_root()
    sets = held_out_sets(data, args.negatives_run, args.scifact_index)
    return ZeroShotStudy(args, data, sets, TokenCache.load(args.cache))


def projected_candidates(
    model: LateInteractionModel, cache: TokenCache, spec: EvalSet
) -> Iterator[tuple[str, list[str], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per query with candidates: its id, the candidate ids, the projected query
    ``(1, q_tokens, dim)`` with mask ``(1, q_tokens)`` and the projected candidates
    ``(n, d_tokens, dim)`` with mask ``(n, d_tokens)``, from cached backbone states."""
    c = model.config
    for qid, text in spec.queries.items():
        docs = spec.top[qid]
        if not docs:
            continue
        q_raw, q_mask = cache.batch([text], c.q_len)
        d_raw, d_mask = cache.batch([spec.texts[d] for d in docs], c.d_len)
        yield qid, docs, model.project(q_raw, q_mask), q_mask, model.project(d_raw, d_mask), d_mask


def cache_set_states(
    cache: TokenCache, model: LateInteractionModel, spec: EvalSet, label: str = ""
) -> None:
    """Cache ``model``'s backbone states of ``spec``'s queries and candidate texts."""
    prefix = f"{label} " if label else ""
    cache.ensure(model, spec.queries.values(), model.config.q_len, desc=f"{prefix}queries")
    cache.ensure(model, spec.texts.values(), model.config.d_len, desc=f"{prefix}passages")


@torch.no_grad()
def rerank_from_cache(
    model: LateInteractionModel, cache: TokenCache, spec: EvalSet
) -> tuple[dict[str, dict[str, float]], float]:
    """Re-rank each query's candidates from cached states; returns run and ms per query.

    The cache holds the frozen base backbone's states: models that change the backbone
    (fine-tuned layers, LAuReL) must be evaluated with ``loupe eval`` instead.
    """
    if model.config.trainable_layers or model.config.laurel is not None:
        raise ValueError(
            "cached frozen-backbone states cannot evaluate a model that changes "
            "its backbone; use loupe eval"
        )
    return rerank_cached_states(model, cache, spec)


@torch.no_grad()
def rerank_cached_states(
    model: LateInteractionModel, cache: TokenCache, spec: EvalSet
) -> tuple[dict[str, dict[str, float]], float]:
    """``rerank_from_cache`` for a cache the caller filled with ``model``'s own backbone."""
    model.eval()
    run: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    for qid, docs, q, q_mask, d, d_mask in projected_candidates(model, cache, spec):
        scores = model(q, q_mask, d[None], d_mask[None])[0].tolist()
        run[qid] = dict(zip(docs, scores, strict=True))
    ms = 1000 * (time.perf_counter() - started) / max(1, len(spec.queries))
    return run, ms


def evaluate_on_sets(
    model: LateInteractionModel,
    cache: TokenCache,
    sets: dict[str, EvalSet],
    rerank: Callable[..., tuple[Run, float]] = rerank_from_cache,
) -> dict[str, MetricsResult]:
    """``model``'s metrics (``MEASURES``) on each evaluation set, re-ranked by ``rerank``."""
    results = {}
    for set_name, spec in sets.items():
        run, _ = rerank(model, cache, spec)
        results[set_name] = evaluate(spec.qrels, run, MEASURES, query_ids=spec.queries)
    return results


def compare_arms(
    results: dict[tuple[str, str], MetricsResult],
    set_names: Iterable[str],
    treatment: str,
    control: str,
) -> dict[str, dict[str, float]]:
    """``paired_ndcg`` of arm ``treatment`` against arm ``control`` on each set (``results``
    keyed by ``(set, arm)``), each printed as it is computed."""
    tests = {}
    for set_name in set_names:
        tests[set_name] = paired_ndcg(results[(set_name, treatment)], results[(set_name, control)])
        print(set_name, f"{treatment} - {control}", json.dumps(tests[set_name]))
    return tests


def paired_ndcg(system: MetricsResult, baseline: MetricsResult) -> dict[str, float]:
    """nDCG@10 of ``system`` minus ``baseline``: mean difference, wins, losses, paired t p."""
    test = compare(system, baseline, "nDCG@10")
    return {
        "difference": test.mean_difference,
        "wins": test.wins,
        "losses": test.losses,
        "p_value": test.p_value,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/lite-exp"))
    parser.add_argument("--scifact-index", type=Path, default=Path("runs/scifact-index"))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--kinds", default="maxsim,sorted,separable,flattened")
    parser.add_argument(
        "--cache", type=Path, help="token-state cache (default: OUT/token-cache.npz)"
    )
    parser.add_argument("--negatives", type=Path, help="SciFact train hard-negative run")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = data_root()
    args.out.mkdir(parents=True, exist_ok=True)
    cache_path = args.cache or args.out / "token-cache.npz"
    sci = data / "beir-scifact"
    negatives = args.negatives or args.out / "scifact-train-dense50.trec"
    if not negatives.is_file():
        from evaluation.jobs import retrieve_run
        from index.readers.trec import write_run

        queries = read_queries(sci / "queries.jsonl", "train")
        run, _ = retrieve_run(args.scifact_index, queries, 50, None)
        write_run(run, negatives, tag="minilm-dense")
    sources = training_sources(data, negatives)
    sets = eval_sets(data, args.scifact_index)

    # Untrained MaxSim over raw 384-d MiniLM tokens also warms the shared cache.
    base = LateInteractionModel.zero_shot()
    cache = TokenCache.load(cache_path) if cache_path.is_file() else TokenCache()
    cached_before = len(cache)
    for spec in sets.values():
        cache_set_states(cache, base, spec, "eval")
    if len(cache) > cached_before or not cache_path.is_file():
        # Rewriting a warm cache costs a minute and races with parallel runs sharing it.
        cache.save(cache_path)

    rows: dict[str, dict[str, float]] = {}
    timings: dict[str, float] = {}
    systems: dict[str, LateInteractionModel] = {"maxsim-untrained-384d": base}
    for kind in args.kinds.split(","):
        config = LiteTrainConfig(
            out=args.out / f"{kind}-d{args.dim}-s{args.seed}",
            data=sources,
            dim=args.dim,
            scorer=ScorerConfig(kind=kind),
            max_steps=args.steps,
            seed=args.seed,
            cache=cache_path,
            eval_every=100,
            patience=4,
        )
        systems[f"{kind}-trained-d{args.dim}"] = trained_model(config, token_cache=cache)
    for name, model in systems.items():
        for set_name, spec in sets.items():
            run, ms = rerank_from_cache(model, cache, spec)
            result = evaluate(spec.qrels, run, MEASURES, query_ids=spec.queries)
            rows[f"{set_name} | {name}"] = result.aggregate
            timings[f"{set_name} | {name}"] = ms
    for set_name, spec in sets.items():
        result = evaluate(spec.qrels, spec.run, MEASURES, query_ids=spec.queries)
        rows[f"{set_name} | first stage"] = result.aggregate
    print(format_table(rows, MEASURES))
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "metrics": rows,
                "ms_per_query_from_cache": timings,
                "steps": args.steps,
                "seed": args.seed,
                "dim": args.dim,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
