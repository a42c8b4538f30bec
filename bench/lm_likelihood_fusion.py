"""Query likelihood from a small causal LM next to untrained MaxSim (reports/lite.md).

UPR (Sachan et al., arXiv 2204.07496) scores a candidate passage by how likely a frozen LM
finds the query after the passage: the mean log-probability of the query's tokens after
``Passage: {passage}\\nPlease write a question based on this passage.\\nQuestion:``. Here the
LM is the packaged Gemma 3 270M, a signal independent of MiniLM, and the question is whether
it adds to untrained 384-d MaxSim when the two are fused:

    fused = (1 - w) · z(MaxSim) + w · z(log-likelihood)      (z: per-query z-scores)

``w`` is chosen on the held-out SciFact-train queries (``scifact_dev_set``: dense top 50),
never on DL19, then applied to the DL19 BM25 top-100 with a paired t-test against MaxSim.
The DL19 curve over ``w`` is printed for reading only; DL19 5-fold cross-validation (``w``
chosen on four folds, scored on the fifth) gives the in-domain number; the fused DL19 run
at each weight the folds chose is written as a teacher run (``fused-dl19-bm25-wW.trec``,
for bench/lite_dl19_kfold.py and bench/lm_teacher_distill.py). A cascade (the LM
scores only MaxSim's top ``k``) is simulated from the same scores, and run for real on
SciFact test (300 queries, dense top 100; the LM scores MaxSim's top
``--scifact-test-cascade``). LM scores are cached per set in ``--out`` and the run resumes
query by query. Usage (LM folder from
``python -m models.causal_lm runs/gemma3-270m``)::

    python bench/lm_likelihood_fusion.py --lm runs/gemma3-270m --out runs/lm-fusion
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bench.harness import write_json
from bench.lite_experiment import (
    MEASURES,
    EvalSet,
    add_experiment_inputs,
    cache_set_states,
    dl19_bm25_set,
    kfold,
    paired_ndcg,
    rerank_from_cache,
    scifact_dev_set,
    scifact_test_set,
)
from evaluation.datasets import data_root
from evaluation.metrics import MetricsResult, evaluate, format_table
from index.readers.trec import Run, write_run
from models.causal_lm import CausalLM, load_causal_lm
from models.late_interaction import LateInteractionModel
from training.token_cache import TokenCache

PROMPT_BEFORE = "Passage: "
PROMPT_AFTER = "\nPlease write a question based on this passage.\nQuestion:"
WEIGHTS = [round(0.05 * i, 2) for i in range(21)]  # 0.0 .. 1.0
CASCADE_DEPTHS = [10, 20, 30, 50]


@torch.inference_mode()
def query_log_likelihoods(
    lm: CausalLM, query: str, passages: Sequence[str], max_passage_tokens: int = 180
) -> list[float]:
    """Mean log-probability of ``query``'s tokens after each passage's UPR prompt.

    One batch of ``len(passages)`` sequences ``(bos?, prompt(passage), query)``, left-padded,
    with position ids counted from each sequence's first real token, so a passage's score
    does not depend on the others in the batch.
    """
    tok = lm.tokenizer

    def ids(text: str) -> list[int]:
        return list(tok(text, add_special_tokens=False)["input_ids"])

    query_ids = ids(" " + query)
    if not query_ids:
        raise ValueError("the query has no tokens")
    start = [tok.bos_token_id] if tok.bos_token_id is not None else []
    before, after = ids(PROMPT_BEFORE), ids(PROMPT_AFTER)
    rows = [start + before + ids(p)[:max_passage_tokens] + after + query_ids for p in passages]
    width = max(len(r) for r in rows)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    n = len(query_ids)
    device = lm.device
    logits = lm.model(
        input_ids=input_ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        logits_to_keep=n + 1,
    ).logits[:, :-1]  # (passages, n, vocab): the positions that predict the query tokens
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    targets = torch.tensor(query_ids, device=device).expand(len(rows), n)
    return log_probs.gather(-1, targets[..., None])[..., 0].mean(-1).tolist()


def zscore_fusion(
    first: dict[str, float], second: dict[str, float], weight: float
) -> dict[str, float]:
    """``(1 - weight)·z(first) + weight·z(second)`` over the documents both score.

    >>> fused = zscore_fusion({"a": 3.0, "b": 1.0}, {"a": 0.0, "b": 10.0}, 0.5)
    >>> fused["a"] == fused["b"] == 0.0
    True
    >>> zscore_fusion({"a": 3.0, "b": 1.0}, {"a": 0.0, "b": 10.0}, 0.0)
    {'a': 1.0, 'b': -1.0}
    """
    docs = [d for d in first if d in second]

    def z(scores: dict[str, float]) -> np.ndarray:
        values = np.array([scores[d] for d in docs], dtype=np.float64)
        spread = values.std()
        return (values - values.mean()) / spread if spread > 0 else values * 0.0

    fused = (1 - weight) * z(first) + weight * z(second)
    return {d: float(s) for d, s in zip(docs, fused, strict=True)}


def cascade(
    first: dict[str, float], second: dict[str, float], weight: float, depth: int
) -> dict[str, float]:
    """Fuse only ``first``'s top ``depth`` (all the second scorer sees); the rest keep
    ``first``'s order below them. Returns rank-derived scores (higher is better).

    >>> cascade({"a": 3.0, "b": 2.0, "c": 1.0}, {"a": 0.0, "b": 9.0, "c": 99.0}, 1.0, 2)
    {'b': 3.0, 'a': 2.0, 'c': 1.0}
    """
    order = sorted(first, key=lambda d: -first[d])
    head, tail = order[:depth], order[depth:]
    fused = zscore_fusion({d: first[d] for d in head}, second, weight)
    ranked = sorted(head, key=lambda d: -fused[d]) + tail
    return {d: float(len(ranked) - i) for i, d in enumerate(ranked)}


def lm_scores(
    load_lm: Callable[[], CausalLM],
    spec: EvalSet,
    path: Path,
    batch_size: int,
    save_every: int = 20,
) -> Run:
    """LM log-likelihood of each query over its candidates, cached in ``path``: a rerun
    resumes after the last saved query (saved every ``save_every`` queries and at the end),
    and calls ``load_lm`` only when some query is left to score."""
    done: Run = json.loads(path.read_text()) if path.is_file() else {}
    todo = [q for q in spec.queries if q not in done and spec.top[q]]
    if not todo:
        return done
    lm = load_lm()
    started, pairs = time.perf_counter(), 0
    for i, qid in enumerate(todo, start=1):
        docs = spec.top[qid]
        scores: list[float] = []
        for b in range(0, len(docs), batch_size):
            chunk = [spec.texts[d] for d in docs[b : b + batch_size]]
            scores += query_log_likelihoods(lm, spec.queries[qid], chunk)
        done[qid] = dict(zip(docs, scores, strict=True))
        pairs += len(docs)
        if i % save_every == 0 or i == len(todo):
            path.write_text(json.dumps(done))
        rate = pairs / (time.perf_counter() - started)
        print(f"{path.stem}: {i}/{len(todo)} queries scored, {rate:.1f} pairs/s", flush=True)
    return done


def fused_run(maxsim: Run, lm: Run, weight: float, depth: int | None = None) -> Run:
    """Per query, the fusion (``depth``: the cascade) of MaxSim and LM scores."""
    if depth is None:
        return {q: zscore_fusion(maxsim[q], lm[q], weight) for q in maxsim}
    return {q: cascade(maxsim[q], lm[q], weight, depth) for q in maxsim}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lm", default="runs/gemma3-270m", help="causal LM folder or name")
    parser.add_argument("--out", type=Path, default=Path("runs/lm-fusion"))
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--scifact-test-cascade",
        type=int,
        default=20,
        help="fuse on SciFact test too, the LM scoring MaxSim's top K (0: skip)",
    )
    add_experiment_inputs(parser, negatives_run=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    data = data_root()
    sets = {
        "scifact-dev-dense50": scifact_dev_set(data, args.negatives_run),
        "dl19-bm25": dl19_bm25_set(data),
    }
    cache = TokenCache.load(args.cache)
    base = LateInteractionModel.zero_shot()
    load_lm = functools.cache(lambda: load_causal_lm(args.lm, device="cpu"))

    def metrics(spec: EvalSet, run: Run) -> MetricsResult:
        return evaluate(spec.qrels, run, MEASURES, query_ids=spec.queries)

    maxsim, lm_runs, curves = {}, {}, {}
    rows: dict[str, dict[str, float]] = {}
    for name, spec in sets.items():
        cache_set_states(cache, base, spec)
        maxsim[name], _ = rerank_from_cache(base, cache, spec)
        lm_runs[name] = lm_scores(
            load_lm, spec, args.out / f"lm-scores-{name}.json", args.batch_size
        )
        rows[f"{name} | first stage"] = metrics(spec, spec.run).aggregate
        rows[f"{name} | MaxSim 384-d"] = metrics(spec, maxsim[name]).aggregate
        rows[f"{name} | LM likelihood"] = metrics(spec, lm_runs[name]).aggregate
        curves[name] = {
            w: metrics(spec, fused_run(maxsim[name], lm_runs[name], w)).aggregate["nDCG@10"]
            for w in WEIGHTS
        }
    tune, test = "scifact-dev-dense50", "dl19-bm25"
    weight = max(WEIGHTS, key=lambda w: (curves[tune][w], -w))  # ties: the smaller weight
    baseline = metrics(sets[test], maxsim[test])
    cv_run: Run = {}
    cv_weights = []
    for held_out in kfold(sets[test].queries, folds=5, seed=0):
        train = sets[test].restricted(q for q in sets[test].queries if q not in held_out)

        def train_ndcg(w: float, train: EvalSet = train) -> float:
            run = fused_run(maxsim[test], lm_runs[test], w)
            return metrics(train, run).aggregate["nDCG@10"]

        fold_weight = max(WEIGHTS, key=lambda w: (train_ndcg(w), -w))
        cv_weights.append(fold_weight)
        fused = fused_run(maxsim[test], lm_runs[test], fold_weight)
        cv_run |= {q: fused[q] for q in held_out}
    cv_result = metrics(sets[test], cv_run)
    for w in sorted(set(cv_weights)):  # teacher runs for bench/lite_dl19_kfold.py --teacher
        teacher = fused_run(maxsim[test], lm_runs[test], w)
        write_run(teacher, args.out / f"fused-{test}-w{w:g}.trec", tag=f"maxsim+lm-w{w:g}")
    rows[f"{test} | fused, w by 5-fold CV {cv_weights}"] = cv_result.aggregate
    tests = {f"{test} 5-fold CV": paired_ndcg(cv_result, baseline)}
    for depth in [None, *CASCADE_DEPTHS]:
        label = "all" if depth is None else f"top {depth}"
        for name, spec in sets.items():
            result = metrics(spec, fused_run(maxsim[name], lm_runs[name], weight, depth))
            rows[f"{name} | fused w={weight:g} ({label})"] = result.aggregate
            if name == test:
                tests[f"{test} {label}"] = paired_ndcg(result, baseline)
    if args.scifact_test_cascade:
        name, depth = "scifact-test-dense", args.scifact_test_cascade
        spec = scifact_test_set(data, args.scifact_index)
        cache_set_states(cache, base, spec)
        first, _ = rerank_from_cache(base, cache, spec)
        heads = {q: sorted(run, key=lambda d: -run[d])[:depth] for q, run in first.items()}
        path = args.out / f"lm-scores-{name}-top{depth}.json"
        second = lm_scores(load_lm, replace(spec, top=heads), path, args.batch_size)
        without = metrics(spec, first)
        with_lm = metrics(spec, fused_run(first, second, weight, depth))
        rows[f"{name} | MaxSim 384-d"] = without.aggregate
        rows[f"{name} | fused w={weight:g} (top {depth})"] = with_lm.aggregate
        tests[f"{name} top {depth}"] = paired_ndcg(with_lm, without)
    print(format_table(rows, MEASURES))
    for name, curve in curves.items():
        print(name, "nDCG@10 by w:", " ".join(f"{w:g}:{v:.4f}" for w, v in curve.items()))
    print(f"w chosen on {tune}: {weight:g}")
    for label, t in tests.items():
        print(f"fused ({label}) - MaxSim:", json.dumps(t))
    write_json(
        args.out / "results.json",
        {
            "metrics": rows,
            "ndcg10_by_weight": curves,
            "weight": weight,
            "dl19_cv_weights": cv_weights,
            "fused_vs_maxsim": tests,
            "args": vars(args),
        },
    )


if __name__ == "__main__":
    main()
