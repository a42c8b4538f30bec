"""IDF-weighted MaxSim: do rare query tokens deserve more of the score? (reports/lite.md,
"Query token weights")

MaxSim sums every query token's best similarity alike, so "what", "is", [CLS] and [SEP]
weigh as much as "jeweller". Weighting each query token by its inverse document frequency,
``w = idf^α`` with ``idf = log(1 + (N - df + 0.5) / (df + 0.5))`` (BM25's, over WordPiece
tokens, a document counted once per token), is a prior that needs no training. ``α`` = 0 is
plain MaxSim; the special tokens, found in every document, get weights near 0 for α > 0.

Each set's document frequencies come from its own collection, as an index would count
them: the SciFact corpus (5,183 abstracts) for SciFact, the DL19 pooled corpus (15,939
MS MARCO passages) for DL19. The pool holds the passages judged for DL19's 43 queries, so
their terms are commoner there than in MS MARCO: that biases their weights down, against
this method. ``α`` is chosen on the held-out SciFact-train queries (dense top 50), never on
DL19, then scored on DL19 (BM25 top 100) and SciFact test (dense top 100) against plain
MaxSim; DL19 5-fold cross-validation gives the in-domain number. Two re-rankers: untrained
MaxSim over MiniLM's 384-d tokens and the shipped default (MaxSim over its trained 128-d
projection, first 128 tokens here). Deterministic, no training. Usage::

    python bench/query_token_weights.py --out runs/query-token-weights \\
        --scifact-index runs/scifact-index-maxp --negatives-run runs/scifact-train-dense50/run.trec
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import torch

from bench.harness import write_json
from bench.lite_experiment import (
    DEV_SET,
    MEASURES,
    EvalSet,
    cross_validated_choice,
    ndcg_at_10,
    paired_ndcg,
    zero_shot_study,
)
from evaluation.metrics import MetricsResult, evaluate, format_table
from index.readers import read_corpus
from index.readers.trec import Run
from models.late_interaction import LateInteractionModel
from training.token_cache import TokenCache

ALPHAS = (0.0, 0.25, 0.5, 1.0, 2.0)
DEFAULT_MODEL = Path("models/weights/reranker-default")


def document_frequencies(model: LateInteractionModel, texts: list[str]) -> tuple[Counter[int], int]:
    """How many of the texts hold each token id (first ``d_len`` tokens), and their count."""
    tokenizer = model.encoder.backbone.tokenizer
    df: Counter[int] = Counter()
    for start in range(0, len(texts), 1000):
        batch = tokenizer(
            texts[start : start + 1000], truncation=True, max_length=model.config.d_len
        )
        for ids in batch["input_ids"]:
            df.update(set(ids))
    return df, len(texts)


def idf(df: int, n: int) -> float:
    """BM25's inverse document frequency, positive for every df.

    >>> round(idf(1, 100), 3), round(idf(100, 100), 4)
    (4.21, 0.005)
    """
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


@torch.no_grad()
def weighted_runs(
    model: LateInteractionModel,
    cache: TokenCache,
    spec: EvalSet,
    frequencies: tuple[Counter[int], int],
) -> dict[float, Run]:
    """Each ``α``'s run: per query, ``Σ_i idf(token_i)^α · max_j cos(q_i, d_j)`` over the
    model's (projected) tokens; queries encoded here, candidates from the cache."""
    df, n = frequencies
    tokenizer = model.encoder.backbone.tokenizer
    ids = [q for q in spec.queries if spec.top[q]]
    texts = [spec.queries[q] for q in ids]
    batch = model.encoder.tokenize(texts, model.config.q_len)
    out = model.encoder.forward_tokens(batch)
    queries = model.project(out.embeddings, out.mask)  # (q, q_tokens, dim), zero at padding
    token_ids = tokenizer(texts, truncation=True, max_length=model.config.q_len)["input_ids"]
    runs: dict[float, Run] = {alpha: {} for alpha in ALPHAS}
    for row, qid in enumerate(ids):
        docs = spec.top[qid]
        raw, d_mask = cache.batch([spec.texts[d] for d in docs], model.config.d_len)
        d = model.project(raw, d_mask)  # (n, d_tokens, dim)
        length = len(token_ids[row])
        q = queries[row, :length]  # (q_tokens, dim)
        sims = torch.einsum("qh,nth->nqt", q, d).masked_fill(~d_mask[:, None, :], -1e4)
        best = sims.max(dim=2).values  # (n, q_tokens)
        token_idf = torch.tensor([idf(df.get(t, 0), n) for t in token_ids[row]])
        for alpha in ALPHAS:
            scores = (best * token_idf**alpha).sum(dim=1).tolist()
            runs[alpha][qid] = dict(zip(docs, scores, strict=True))
    return runs


def main() -> None:
    study = zero_shot_study(__doc__.split("\n")[0], Path("runs/query-token-weights"))
    args, data, sets, cache = study.args, study.data, study.sets, study.cache
    models = {
        "MaxSim 384-d, untrained": LateInteractionModel.zero_shot(),
        "shipped default": LateInteractionModel.load(DEFAULT_MODEL),
    }
    collections = {
        DEV_SET: data / "beir-scifact",
        "scifact-test-dense": data / "beir-scifact",
        "dl19-bm25": data / "trec-dl-2019-passage" / "corpus.jsonl",
    }
    base = next(iter(models.values()))
    texts = {path: [d.full_text for d in read_corpus(path)] for path in set(collections.values())}
    frequencies = {path: document_frequencies(base, t) for path, t in texts.items()}
    for name, spec in sets.items():
        cache.ensure(base, spec.texts.values(), base.config.d_len, desc=f"{name} passages")

    def metrics(name: str, run: Run) -> MetricsResult:
        return evaluate(sets[name].qrels, run, MEASURES, query_ids=sets[name].queries)

    rows: dict[str, dict[str, float]] = {}
    tests: dict[str, dict[str, float]] = {}
    curves: dict[str, dict[str, dict[str, float]]] = {}
    chosen: dict[str, float] = {}
    for label, model in models.items():
        model.eval()
        runs = {
            name: weighted_runs(model, cache, spec, frequencies[collections[name]])
            for name, spec in sets.items()
        }
        curves[label] = {
            name: {f"{a:g}": round(ndcg_at_10(sets[name], by[a]), 4) for a in ALPHAS}
            for name, by in runs.items()
        }
        alpha = chosen[label] = max(
            ALPHAS, key=lambda a: (ndcg_at_10(sets[DEV_SET], runs[DEV_SET][a]), -a)
        )
        for name in sets:
            plain = metrics(name, runs[name][0.0])
            weighted = metrics(name, runs[name][alpha])
            rows[f"{name} | {label}"] = plain.aggregate
            rows[f"{name} | {label}, idf^{alpha:g} (from {DEV_SET})"] = weighted.aggregate
            if name != DEV_SET:
                tests[f"{name} {label}"] = paired_ndcg(weighted, plain)
        dl19_runs = runs["dl19-bm25"]
        cv_run, cv_alphas = cross_validated_choice(sets["dl19-bm25"], ALPHAS, dl19_runs.__getitem__)
        cv = metrics("dl19-bm25", cv_run)
        rows[f"dl19-bm25 | {label}, α by 5-fold CV {cv_alphas}"] = cv.aggregate
        tests[f"dl19-bm25 {label} 5-fold CV"] = paired_ndcg(
            cv, metrics("dl19-bm25", runs["dl19-bm25"][0.0])
        )
    print(format_table(rows, MEASURES))
    for label, by_set in curves.items():
        for name, curve in by_set.items():
            print(label, name, "nDCG@10 by α:", json.dumps(curve))
    for label, t in tests.items():
        print(f"weighted ({label}) - plain:", json.dumps(t))
    write_json(
        args.out / "results.json",
        {
            "metrics": rows,
            "ndcg10_by_alpha": curves,
            "alpha_from_dev": chosen,
            "weighted_vs_plain": tests,
            "args": vars(args),
        },
    )


if __name__ == "__main__":
    main()
