"""ColBERT's query augmentation for untrained MaxSim: do [MASK]-padded queries lift it?
(reports/lite.md, "Query augmentation")

ColBERT pads every query with [MASK] tokens to a fixed length (32). The backbone fills
their states from the query's context, so each acts as a soft expansion term that MaxSim
sums over with the real tokens. ColBERT learns this in training; the question here is
whether the frozen MiniLM's [MASK] states help zero-shot MaxSim (384-d, the ``maxsim``
re-ranker) without training.

Arms: queries padded after their [SEP] with [MASK] to ``length`` tokens (16, 24, 32; real
tokens never cut), the [MASK] tokens' similarities weighted by ``w`` (0.25, 0.5, 1.0), the
sum divided by nothing (ColBERT's form). The arm is chosen on the held-out SciFact-train
queries (dense top 50), never on DL19, then scored on DL19 (BM25 top 100) and SciFact test
(dense top 100) with a paired t-test against plain MaxSim; DL19 5-fold cross-validation
gives the in-domain number. Candidates' states come from the token-state cache of
bench/lite_experiment.py (first 128 tokens); queries are encoded here. Usage::

    python bench/query_augmentation.py --out runs/query-augmentation \\
        --scifact-index runs/scifact-index-maxp --negatives-run runs/scifact-train-dense50/run.trec
"""

from __future__ import annotations

import itertools
import json
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
from index.readers.trec import Run
from models.late_interaction import LateInteractionModel
from models.pooling import l2_normalize
from training.token_cache import TokenCache

LENGTHS = (16, 24, 32)
MASK_WEIGHTS = (0.25, 0.5, 1.0)
Arm = tuple[int, float]
"""(padded query length, weight of the [MASK] tokens); (0, 0.0) is plain MaxSim."""
PLAIN: Arm = (0, 0.0)


@torch.no_grad()
def augmented_queries(
    model: LateInteractionModel, texts: list[str], length: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unit query token states ``(n, tokens, hidden)``, the mask of real and [MASK] tokens
    ``(n, tokens)`` and the mask of the [MASK] tokens alone, each query padded after its
    [SEP] with [MASK] up to ``length`` tokens (attended to, as in ColBERT)."""
    tokenizer = model.encoder.backbone.tokenizer
    ids = tokenizer(texts, truncation=True, max_length=model.config.q_len)["input_ids"]
    padded = [row + [tokenizer.mask_token_id] * max(0, length - len(row)) for row in ids]
    batch = model.encoder.pad_token_ids(padded)
    out = model.encoder.forward_tokens(batch)
    is_mask = torch.zeros_like(out.mask)
    for i, row in enumerate(ids):
        is_mask[i, len(row) : len(padded[i])] = True
    return l2_normalize(out.embeddings.float()) * out.mask[..., None], out.mask, is_mask


@torch.no_grad()
def maxsim_runs(
    model: LateInteractionModel, cache: TokenCache, spec: EvalSet, arms: list[Arm]
) -> dict[Arm, Run]:
    """Each arm's run: per query, the sum over its tokens of the best cosine with any
    candidate token, [MASK] tokens weighted by the arm's ``w``."""
    runs: dict[Arm, Run] = {arm: {} for arm in arms}
    ids = [q for q in spec.queries if spec.top[q]]
    lengths = sorted({length for length, _ in arms})
    states = {n: augmented_queries(model, [spec.queries[q] for q in ids], n) for n in lengths}
    for row, qid in enumerate(ids):
        docs = spec.top[qid]
        raw, d_mask = cache.batch([spec.texts[d] for d in docs], model.config.d_len)
        d = l2_normalize(raw) * d_mask[..., None]  # (n, d_tokens, hidden)
        for length in lengths:
            q, q_mask, is_mask = (x[row] for x in states[length])  # (q_tokens, hidden), ...
            sims = torch.einsum("qh,nth->nqt", q, d).masked_fill(~d_mask[:, None, :], -1e4)
            best = sims.max(dim=2).values * q_mask  # (n, q_tokens)
            for arm_length, weight in arms:
                if arm_length != length:
                    continue
                weights = torch.where(is_mask, weight, 1.0)
                scores = (best * weights).sum(dim=1).tolist()
                runs[(arm_length, weight)][qid] = dict(zip(docs, scores, strict=True))
    return runs


def main() -> None:
    study = zero_shot_study(__doc__.split("\n")[0], Path("runs/query-augmentation"))
    args, sets, cache, tune = study.args, study.sets, study.cache, DEV_SET
    base = LateInteractionModel.zero_shot()
    base.eval()
    # the plain arm through the same code as the others, at the query's own length
    arms = [PLAIN, *itertools.product(LENGTHS, MASK_WEIGHTS)]
    runs: dict[str, dict[Arm, Run]] = {}
    for name, spec in sets.items():
        cache.ensure(base, spec.texts.values(), base.config.d_len, desc=f"{name} passages")
        runs[name] = maxsim_runs(base, cache, spec, arms)

    def metrics(name: str, run: Run) -> MetricsResult:
        return evaluate(sets[name].qrels, run, MEASURES, query_ids=sets[name].queries)

    chosen = max(arms, key=lambda arm: (ndcg_at_10(sets[tune], runs[tune][arm]), arm == PLAIN))
    rows: dict[str, dict[str, float]] = {}
    tests: dict[str, dict[str, float]] = {}
    curves = {
        name: {f"{n}:{w:g}": round(ndcg_at_10(sets[name], by_arm[(n, w)]), 4) for n, w in arms}
        for name, by_arm in runs.items()
    }
    for name in sets:
        plain = metrics(name, runs[name][PLAIN])
        rows[f"{name} | MaxSim 384-d"] = plain.aggregate
        best = metrics(name, runs[name][chosen])
        rows[f"{name} | + [MASK] to {chosen[0]}, w={chosen[1]:g} (from {tune})"] = best.aggregate
        if name != tune:
            tests[name] = paired_ndcg(best, plain)
    dl19 = sets["dl19-bm25"]
    cv_run, cv_arms = cross_validated_choice(dl19, arms, runs["dl19-bm25"].__getitem__)
    cv = metrics("dl19-bm25", cv_run)
    rows[f"dl19-bm25 | arm by 5-fold CV {cv_arms}"] = cv.aggregate
    tests["dl19-bm25 5-fold CV"] = paired_ndcg(cv, metrics("dl19-bm25", runs["dl19-bm25"][PLAIN]))
    print(format_table(rows, MEASURES))
    for name, curve in curves.items():
        print(name, "nDCG@10 by length:w", json.dumps(curve))
    for label, t in tests.items():
        print(f"augmented ({label}) - MaxSim:", json.dumps(t))
    write_json(
        args.out / "results.json",
        {
            "metrics": rows,
            "ndcg10_by_arm": curves,
            "chosen_on_dev": list(chosen),
            "augmented_vs_maxsim": tests,
            "args": vars(args),
        },
    )


if __name__ == "__main__":
    main()
