"""Train on the windows inference reads (MaxP training), or on the first window only?

Documents are read as up to 8 windows at inference (scored as the best window), but the
default's recipe trained on each passage's first 128 tokens until this bench made the case
for ``train_windows = 8`` (reports/lite.md, "Training on windows"). On SciFact, where 98 %
of abstracts run past 128 tokens, the sentence that supports a claim often lies in a later
window, so first-window training pairs the claim with text that may not hold the evidence.
This bench trains the default's recipe (``configs/reranker-default.toml``: data, negatives,
schedule, dev split) twice per seed, setting only ``train_windows``:

- ``first``: ``train_windows = 1`` (the recipe before);
- ``maxp``: ``train_windows = --windows`` (8, the recipe now): every passage read as its
  windows, scored as its best one in the loss and in the dev evaluation that picks the
  checkpoint.

Both are then scored as the product serves them, each candidate read as up to 8 windows
(``--inference-windows``), and as their first window alone, on SciFact test (300 queries,
dense top 100 of ``--scifact-index``) and TREC DL19 (43 queries, BM25 top 100), with paired
t-tests of ``maxp`` against ``first``. Untrained 384-d MaxSim and the shipped default are
scored by the same code for reference. Frozen MiniLM states are cached once
(``--cache``; 2.8 GB on disk with SciFact's windows). Usage::

    PYTHONPATH=. python bench/lite_window_training.py --out runs/window-training --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bench.harness import write_json
from bench.lite_experiment import MEASURES, EvalSet, eval_sets, paired_ndcg, trained_model
from evaluation.datasets import data_root
from evaluation.metrics import MetricsResult, evaluate, format_table
from index.readers.trec import Run
from models.late_interaction import DocumentWindows, LateInteractionModel
from models.registry import load_late_interaction
from training.batches import load_examples
from training.lite_job import load_lite_config
from training.token_cache import TokenCache


@torch.no_grad()
def rerank_cached_windows(
    model: LateInteractionModel, cache: TokenCache, spec: EvalSet, windows: int
) -> Run:
    """Each query's candidates scored as their best of up to ``windows`` windows, from cached
    backbone states (as the token store serves them, before its fp16 rounding)."""
    model.eval()
    run: Run = {}
    for qid, text in spec.queries.items():
        docs = spec.top[qid]
        if not docs:
            continue
        q_raw, q_mask = cache.batch([text], model.config.q_len)
        raw = cache.window_batch([spec.texts[d] for d in docs], model, windows)
        pool = DocumentWindows(
            model.project(raw.tokens, raw.mask), raw.mask, raw.owners, raw.documents
        )
        scores = model.score_windows(model.project(q_raw, q_mask), q_mask, pool)[0]
        run[qid] = dict(zip(docs, scores.tolist(), strict=True))
    return run


def bench_setup(
    out: Path, scifact_index: Path, cache_path: Path
) -> tuple[dict[str, EvalSet], TokenCache]:
    """Two torch threads, the output folder, the evaluation sets and the state cache (empty
    when ``cache_path`` does not exist yet): what the window-training benches start from."""
    torch.set_num_threads(2)
    out.mkdir(parents=True, exist_ok=True)
    sets = eval_sets(data_root(), scifact_index)
    return sets, TokenCache.load(cache_path) if cache_path.is_file() else TokenCache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/window-training"))
    parser.add_argument("--config", type=Path, default=Path("configs/reranker-default.toml"))
    parser.add_argument("--scifact-index", type=Path, default=Path("runs/scifact-index-lite"))
    parser.add_argument("--cache", type=Path, default=Path("runs/window-training/cache.npz"))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--windows", type=int, default=8, help="train_windows of the maxp arm")
    parser.add_argument("--inference-windows", type=int, default=8)
    args = parser.parse_args()
    sets, cache = bench_setup(args.out, args.scifact_index, args.cache)
    cached = len(cache)

    base = load_late_interaction("maxsim", device="cpu")
    reference = {
        "maxsim (untrained, 384-d)": base,
        "shipped default": load_late_interaction(
            "default", device="cpu", share_encoder=base.encoder
        ),
    }
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = {"first": 1, "maxp": args.windows}
    configs = {
        (arm, seed): load_lite_config(
            args.config,
            {
                "out": str(args.out / f"{arm}-s{seed}"),
                "seed": seed,
                "train_windows": windows,
                "doc_windows": max(windows, args.inference_windows),
                "cache": None,
            },
        )
        for arm, windows in arms.items()
        for seed in seeds
    }
    # every state any arm or reading needs, computed once and saved for the next run
    examples = load_examples(next(iter(configs.values())).data)
    passages = {e.positive for e in examples} | {n for e in examples for n in e.negatives}
    cache.ensure(base, {e.query for e in examples}, base.config.q_len, desc="training queries")
    cache.ensure(base, passages, base.config.d_len, desc="training passages, first window")
    cache.ensure_windows(base, passages, args.windows, desc="training passages, windows")
    for name, spec in sets.items():
        texts = list(spec.texts.values())
        cache.ensure(base, spec.queries.values(), base.config.q_len, desc=f"{name} queries")
        cache.ensure(base, texts, base.config.d_len, desc=f"{name} first windows")
        cache.ensure_windows(base, texts, args.inference_windows, desc=f"{name} windows")
    if len(cache) > cached:
        cache.save(args.cache)

    models = dict(reference)
    for (arm, seed), config in configs.items():
        models[f"{arm} s{seed}"] = trained_model(config, token_cache=cache)

    results: dict[str, dict[str, MetricsResult]] = {}
    for set_name, spec in sets.items():
        for name, model in models.items():
            for label, windows in (("8 windows", args.inference_windows), ("first window", 1)):
                run = rerank_cached_windows(model, cache, spec, windows)
                result = evaluate(spec.qrels, run, MEASURES, query_ids=spec.queries)
                results.setdefault(set_name, {})[f"{name} | {label}"] = result
                print(set_name, name, label, json.dumps(result.aggregate), flush=True)

    tests = {
        f"{set_name} s{seed} {label}": paired_ndcg(
            arms_run[f"maxp s{seed} | {label}"], arms_run[f"first s{seed} | {label}"]
        )
        for set_name, arms_run in results.items()
        for seed in seeds
        for label in ("8 windows", "first window")
    }
    for set_name, by_arm in results.items():
        print(
            f"\n{set_name}\n" + format_table({a: r.aggregate for a, r in by_arm.items()}, MEASURES)
        )
    for label, test in tests.items():
        print(f"maxp - first, {label}: {json.dumps(test)}")
    summaries = {
        f"{arm} s{seed}": json.loads((config.out / "summary.json").read_text())
        for (arm, seed), config in configs.items()
    }
    write_json(
        args.out / "results.json",
        {
            "metrics": {s: {a: r.aggregate for a, r in by.items()} for s, by in results.items()},
            "maxp_vs_first": tests,
            "training": summaries,
            "args": vars(args),
        },
    )


if __name__ == "__main__":
    main()
