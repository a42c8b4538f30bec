"""Documents longer than the re-ranker's window: first window, windows, or one long pass?

The re-ranker reads a document's first ``d_len`` (128) tokens. SciFact abstracts run to a
median of 316 MiniLM tokens (98 % exceed 128), DL19 passages to 72 (11 % exceed 128), so
on SciFact most of each candidate is never read. This bench re-ranks the same candidates
with each way of reading the whole document and reports nDCG@10 with paired tests against
the first window (today's behaviour):

- ``first``: the first ``d_len`` tokens (what the service did before, ``doc_windows = 1``);
- ``maxpK``: the document cut into at most ``K`` windows of ``d_len`` tokens overlapping by
  ``--overlap`` tokens, each scored alone, the document's score the best window's (MaxP,
  Dai & Callan 2019); ``maxp`` with no cap. This is the product's own path
  (``TextEncoder.tokenize_windows``, ``LateInteractionModel.score_matrices``);
- ``union``: MaxSim over the tokens of all windows at once (each query token takes its best
  match anywhere in the document); for MaxSim scorers only;
- ``fullN``: one backbone pass over the first ``N`` tokens (MiniLM has 512 positions but
  was trained on 128-256).

Sets: SciFact test (300 queries, dense top 100 from ``--scifact-index``) and DL19 (43
queries, BM25 top 100). Re-rankers: ``--rerankers`` (default ``maxsim,default``). Usage::

    loupe index build --corpus $D/beir-scifact --out runs/scifact-index   # any MiniLM index
    python bench/long_documents.py --scifact-index runs/scifact-index --out runs/long-docs
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from bench.harness import write_json
from bench.lite_experiment import MEASURES, EvalSet, eval_sets, paired_ndcg
from evaluation.datasets import data_root
from evaluation.metrics import MetricsResult, evaluate, format_table
from index.readers.trec import Run
from models.late_interaction import LateInteractionModel, pad_matrices
from models.registry import load_late_interaction

StateMap = dict[str, list[np.ndarray]]
"""Document id -> raw backbone states of each of its windows, ``(tokens_w, hidden)`` fp16."""


@torch.inference_mode()
def window_states(
    model: LateInteractionModel, windows: dict[str, list[list[int]]], batch_size: int = 32
) -> StateMap:
    """Raw backbone states of every window, ``(tokens_w, hidden)`` float16 each, in each
    document's window order (batched by length, as the token store encodes them)."""
    flat = [(doc, ids) for doc, doc_windows in windows.items() for ids in doc_windows]
    states = model.encoder.encode_token_ids(
        [ids for _, ids in flat], lambda raw: raw.embeddings, batch_size, show_progress=True
    )
    out: StateMap = {doc: [] for doc in windows}
    for (doc, _), matrix in zip(flat, states, strict=True):
        out[doc].append(matrix)
    return out


@torch.no_grad()
def rerank_windows(
    model: LateInteractionModel,
    spec: EvalSet,
    query_states: dict[str, np.ndarray],
    states: StateMap,
    aggregate: str,
    max_windows: int = 1,
) -> Run:
    """Re-rank ``spec`` reading each document through its windows' states.

    ``aggregate``: ``maxp`` (best of the first ``max_windows`` windows, scored as the
    product scores a stored matrix), ``union`` (all windows' tokens as one matrix) or
    ``whole`` (each document's one state matrix scored as is, whatever its length)."""
    run: Run = {}
    for qid in spec.queries:
        docs = spec.top[qid]
        if not docs:
            continue
        q_raw, q_mask = pad_matrices([query_states[qid]])
        q = model.project(q_raw, q_mask)[0]
        projected = {d: project_windows(model, states[d][:max_windows]) for d in docs}
        if aggregate == "maxp":
            scores = model.score_matrices(q, [projected[d] for d in docs])
        elif aggregate in ("union", "whole"):  # one matrix per document, any length
            d_tokens, d_mask = pad_matrices([projected[d] for d in docs])
            ones = torch.ones(1, q.shape[0], dtype=torch.bool)
            scores = model(q[None], ones, d_tokens[None], d_mask[None])[0]
        else:
            raise ValueError(f"unknown aggregate {aggregate!r}")
        run[qid] = dict(zip(docs, scores.tolist(), strict=True))
    return run


def project_windows(model: LateInteractionModel, windows: list[np.ndarray]) -> np.ndarray:
    """Windows' raw states projected as ``document_matrices`` stores them: float16, end to end."""
    raw, mask = pad_matrices(windows)
    tokens = model.project(raw, mask).to(torch.float16).numpy()
    return np.concatenate([tokens[i, : len(w)] for i, w in enumerate(windows)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scifact-index", type=Path, default=Path("runs/scifact-index-lite"))
    parser.add_argument("--rerankers", default="maxsim,default")
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--full-lengths", default="256,512")
    parser.add_argument("--caps", default="2,4,8", help="window caps besides 1 and none")
    parser.add_argument("--out", type=Path, default=Path("runs/long-docs"))
    args = parser.parse_args()
    sets = eval_sets(data_root(), args.scifact_index)
    names = args.rerankers.split(",")
    models = {names[0]: load_late_interaction(names[0], device="cpu")}
    for name in names[1:]:
        models[name] = load_late_interaction(
            name, device="cpu", share_encoder=models[names[0]].encoder
        )
    encoder_model = models[names[0]]
    if any(m.config.trainable_layers or m.config.laurel for m in models.values()):
        raise SystemExit("the re-rankers must share one frozen backbone")
    d_len, q_len = encoder_model.config.d_len, encoder_model.config.q_len
    caps = {1: "first", **{int(k): f"maxp{k}" for k in args.caps.split(",") if k}, 10**6: "maxp"}
    layouts: dict[str, tuple[int, int, int]] = {"windows": (d_len, args.overlap, 10**6)}
    for n in (int(x) for x in args.full_lengths.split(",") if x):
        layouts[f"full{n}"] = (n, 0, 1)

    results: dict[str, dict[str, MetricsResult]] = {}
    timings: dict[str, float] = {}
    stats: dict[str, dict[str, float]] = {}
    for set_name, spec in sets.items():
        doc_ids = sorted(spec.texts)
        texts = [spec.texts[d] for d in doc_ids]
        query_ids = list(spec.queries)
        with torch.inference_mode():
            q_batch = encoder_model.backbone_tokens([spec.queries[q] for q in query_ids], q_len)
        query_states = {
            q: q_batch.tokens[i, : int(q_batch.mask[i].sum())].to(torch.float16).numpy()
            for i, q in enumerate(query_ids)
        }
        for layout, (window, overlap, limit) in layouts.items():
            token_ids = encoder_model.encoder.tokenize_windows(texts, window, overlap, limit)
            windows = dict(zip(doc_ids, token_ids, strict=True))
            started = time.perf_counter()
            states = window_states(encoder_model, windows)
            timings[f"{set_name}/{layout}"] = time.perf_counter() - started
            counts = np.array([len(w) for w in windows.values()])
            tokens = np.array([sum(len(ids) for ids in w) for w in windows.values()])
            stats[f"{set_name}/{layout}"] = {
                "documents": len(doc_ids),
                "mean_windows": float(counts.mean()),
                "mean_tokens": float(tokens.mean()),
                **{f"share_over_{k}_windows": float((counts > k).mean()) for k in caps},
            }
            if layout == "windows":
                readings = [("maxp", k, label) for k, label in caps.items()]
                readings.append(("union", 10**6, "union"))
            else:
                readings = [("whole", 1, layout)]
            for name, model in models.items():
                for aggregate, cap, label in readings:
                    if aggregate == "union" and model.config.scorer.kind != "maxsim":
                        continue
                    run = rerank_windows(model, spec, query_states, states, aggregate, cap)
                    arm = f"{name}/{label}"
                    results.setdefault(set_name, {})[arm] = evaluate(
                        spec.qrels, run, MEASURES, query_ids=spec.queries
                    )
                    print(set_name, arm, json.dumps(results[set_name][arm].aggregate), flush=True)

    tests = {
        set_name: {
            arm: paired_ndcg(result, arms[f"{arm.split('/')[0]}/first"])
            for arm, result in arms.items()
            if not arm.endswith("/first")
        }
        for set_name, arms in results.items()
    }
    for set_name, arms in results.items():
        print(f"\n{set_name}\n" + format_table({a: r.aggregate for a, r in arms.items()}, MEASURES))
        for arm, test in tests[set_name].items():
            print(f"  {arm} - first: {json.dumps(test)}")
    write_json(
        args.out / "results.json",
        {
            "overlap": args.overlap,
            "layouts": {k: list(v) for k, v in layouts.items()},
            "caps": caps,
            "stats": stats,
            "encode_seconds": timings,
            "metrics": {
                s: {a: r.aggregate for a, r in arms.items()} for s, arms in results.items()
            },
            "paired_vs_first": tests,
        },
    )


if __name__ == "__main__":
    main()
