"""Loupe's cross-encoder re-ranker against sentence-transformers' ``CrossEncoder`` on the same
model folder: do they score alike, and what does re-ranking 100 candidates cost?

A MiniLM-L6 cross-encoder is built from the packaged all-MiniLM-L6-v2 with a seeded random
one-label head (no trained cross-encoder ships offline), saved to a temporary folder and
loaded by both. Every DL19 query's BM25 top-100 is scored at batch 1 (one query and its 100
candidates per call) by each, alternating which goes first; reported: p50/p99 ms per query,
the largest logit difference, and how many queries get the same top 10 in the same order.
Latency is real; a random head's ranking quality is not reported. Usage::

    LOUPE_DATA_DIR=../shared/data python -m bench.cross_encoder_parity \
        [--queries 43] [--batch-size 32] [--out runs/bench/cross_encoder_parity.json]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers import logging as transformers_logging

from bench.harness import (
    dl19_task,
    latency_summary,
    machine,
    machine_line,
    markdown_table,
    timed_call,
    write_json,
)
from models.backbone import packaged_minilm_path
from models.cross_encoder import CrossEncoderConfig, CrossEncoderReranker


def build_cross_encoder(folder: Path, seed: int) -> Path:
    """The packaged MiniLM with a seeded random one-label classification head."""
    source = packaged_minilm_path()
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=None, help="first N DL19 queries")
    parser.add_argument("--batch-size", type=int, default=32, help="pairs per forward pass")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers_logging.set_verbosity_error()
    from sentence_transformers import CrossEncoder

    task = dl19_task(args.queries)
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_cross_encoder(Path(tmp) / "minilm-cross-encoder", args.seed)
        loupe = CrossEncoderReranker.load(
            CrossEncoderConfig(str(folder), args.max_length, args.batch_size, "cpu")
        )
        reference = CrossEncoder(
            str(folder),
            max_length=args.max_length,
            device="cpu",
            activation_fn=torch.nn.Identity(),
        )

        def loupe_scores(query: str, docs: list[str]) -> np.ndarray:
            return loupe.score(query, docs)

        def reference_scores(query: str, docs: list[str]) -> np.ndarray:
            pairs = [(query, d) for d in docs]
            return np.asarray(
                reference.predict(pairs, batch_size=args.batch_size, show_progress_bar=False)
            )

        methods = {
            "loupe CrossEncoderReranker": loupe_scores,
            "sentence-transformers": reference_scores,
        }
        times: dict[str, list[float]] = {name: [] for name in methods}
        scores: dict[str, dict[str, np.ndarray]] = {name: {} for name in methods}
        for i, qid in enumerate(task.queries):
            names = list(methods) if i % 2 == 0 else list(reversed(methods))
            for name in names:
                out, ms = timed_call(partial(methods[name], task.queries[qid], task.docs(qid)))
                times[name].append(ms)
                scores[name][qid] = out

    loupe_name, reference_name = methods
    largest = max(
        float(np.abs(scores[loupe_name][q] - scores[reference_name][q]).max()) for q in task.queries
    )
    same_top10 = sum(
        list(np.argsort(-scores[loupe_name][q], kind="stable")[:10])
        == list(np.argsort(-scores[reference_name][q], kind="stable")[:10])
        for q in task.queries
    )
    summary = {name: latency_summary(samples) for name, samples in times.items()}
    rows = [
        [name, f"{s['p50_ms']:.0f}", f"{s['p99_ms']:.0f}", f"{s['mean_ms']:.0f}"]
        for name, s in summary.items()
    ]
    m = machine()
    print(f"{task.name}: {len(task.queries)} queries x 100 candidates; {machine_line(m)}")
    print(markdown_table(["method", "p50 ms", "p99 ms", "mean ms"], rows))
    print(
        f"largest logit difference {largest:.2e}; same top 10 in the same order: "
        f"{same_top10}/{len(task.queries)} queries"
    )
    write_json(
        args.out,
        {
            "task": task.name,
            "queries": len(task.queries),
            "latency_ms": summary,
            "largest_logit_difference": largest,
            "same_top10": same_top10,
            "machine": m,
            "args": {k: str(v) for k, v in vars(args).items()},
        },
    )


if __name__ == "__main__":
    main()
