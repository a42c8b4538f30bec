"""A passage-length prior on a late-interaction score: does it lift DL19? (reports/lite.md)

Re-scores a re-ranked run as ``score + beta * log(passage tokens)`` (tokens as the
re-ranker sees them, cut at its ``d_len``; ``beta > 0`` favours longer passages) and
reports, for a grid of ``beta``:
  - DL19 nDCG@10 at each ``beta`` (chosen on the test queries: for reading only);
  - DL19 5-fold cross-validation (``beta`` chosen on four folds, scored on the fifth) over
    three fold seeds, with a paired t-test against ``beta = 0``;
  - the held-out choice: pairwise accuracy (positive above negative) on the 100 MS MARCO
    training triples, scored by the same re-ranker.
SciFact cannot choose ``beta``: its passages all fill the 128-token window.

Needs a DL19 run re-ranked by the product, e.g. ``loupe eval --candidates
$D/trec-dl-2019-passage/run.BM25.top100.trec --corpus $D/trec-dl-2019-passage/corpus.jsonl
--reranker maxsim --out runs/calibration/maxsim-dl19 ...`` (reports/lite.md). Usage::

    python bench/length_prior.py --run runs/calibration/maxsim-dl19/run.trec --reranker maxsim
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from bench.harness import write_json
from bench.lite_experiment import cross_validated_run
from evaluation.compare import compare
from evaluation.datasets import data_root
from evaluation.metrics import MetricsResult, evaluate
from index.readers import read_corpus, read_qrels, read_run
from index.readers.trec import Qrels, Run
from index.readers.triples import read_triples
from models.registry import load_late_interaction, load_reranker

BETAS = [-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0]


def with_length_prior(run: Run, log_lengths: Mapping[str, float], beta: float) -> Run:
    """``score + beta * log(length)`` for every candidate.

    >>> with_length_prior({"q": {"a": 1.0}}, {"a": 2.0}, 0.5)
    {'q': {'a': 2.0}}
    """
    return {
        q: {d: s + beta * log_lengths[d] for d, s in candidates.items()}
        for q, candidates in run.items()
    }


def ndcg(qrels: Qrels, run: Run, queries: list[str]) -> MetricsResult:
    return evaluate(qrels, run, ["nDCG@10"], query_ids=queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/calibration/maxsim-dl19/run.trec"))
    parser.add_argument("--reranker", default="maxsim")
    parser.add_argument("--out", type=Path, default=Path("runs/length-prior"))
    args = parser.parse_args()
    data = data_root()
    dl19 = data / "trec-dl-2019-passage"
    qrels = read_qrels(dl19 / "qrels.trec")
    run = {q: c for q, c in read_run(args.run).items() if q in qrels}
    queries = sorted(run)
    model = load_late_interaction(args.reranker, device="cpu")
    tokenizer, d_len = model.encoder.backbone.tokenizer, model.config.d_len

    def log_token_counts(texts: Mapping[str, str]) -> dict[str, float]:
        ids = tokenizer(list(texts.values()), truncation=True, max_length=d_len)["input_ids"]
        return {key: float(np.log(len(x))) for key, x in zip(texts, ids, strict=True)}

    wanted = {d for candidates in run.values() for d in candidates}
    corpus = read_corpus(dl19 / "corpus.jsonl")
    texts = {doc.id: doc.full_text for doc in corpus if doc.id in wanted}
    log_lengths = log_token_counts(texts)

    base = ndcg(qrels, run, queries)
    curve = {
        beta: ndcg(qrels, with_length_prior(run, log_lengths, beta), queries).aggregate["nDCG@10"]
        for beta in BETAS
    }
    print(f"DL19 nDCG@10 by beta (chosen on the test queries): {curve}")
    folds = {}
    for seed in range(3):
        merged, chosen = cross_validated_run(
            queries,
            BETAS,
            lambda beta: with_length_prior(run, log_lengths, beta),
            lambda scored, train: ndcg(qrels, scored, train).aggregate["nDCG@10"],
            seed=seed,
        )
        result = ndcg(qrels, merged, queries)
        test = compare(result, base, "nDCG@10")
        folds[seed] = {
            "nDCG@10": result.aggregate["nDCG@10"],
            "betas": chosen,
            "wins": test.wins,
            "losses": test.losses,
            "p_value": test.p_value,
        }
        print(
            f"5-fold CV, seed {seed}: nDCG@10 {result.aggregate['nDCG@10']:.4f} "
            f"(beta = 0: {base.aggregate['nDCG@10']:.4f}), betas {chosen}, "
            f"{test.wins} wins / {test.losses} losses, paired t p = {test.p_value:.3f}"
        )

    reranker = load_reranker(args.reranker, device="cpu", share_encoder=model.encoder)
    triples = list(
        read_triples(data / "msmarco-train-triples-sample" / "triples.train.sample100.tsv")
    )
    margins, log_ratio = [], []
    for triple in triples:
        scores = reranker.score(triple.query, [triple.positive, triple.negative])
        lengths = log_token_counts({"p": triple.positive, "n": triple.negative})
        margins.append(float(scores[0] - scores[1]))
        log_ratio.append(lengths["p"] - lengths["n"])
    m, r = np.array(margins), np.array(log_ratio)
    accuracy = {beta: float(((m + beta * r) > 0).mean()) for beta in BETAS}
    print(
        f"MS MARCO triples ({len(triples)}): positive longer in {float((r > 0).mean()):.2f}; "
        f"pairwise accuracy by beta {accuracy}"
    )
    write_json(
        args.out / "results.json",
        {
            "run": str(args.run),
            "reranker": args.reranker,
            "dl19_by_beta": curve,
            "dl19_cv": folds,
            "triples_positive_longer": float((r > 0).mean()),
            "triples_accuracy_by_beta": accuracy,
        },
    )


if __name__ == "__main__":
    main()
