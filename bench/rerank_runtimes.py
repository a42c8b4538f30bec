"""Re-ranking 100 DL19 candidates by re-encoding them: PyTorch vs ONNX Runtime (fp32, int8),
same shipped re-ranker, same texts, in one run (issue 7).

    python bench/rerank_runtimes.py --onnx runs/onnx-default [--queries 10] [--quick]

Needs ``loupe export onnx default --out runs/onnx-default --int8`` first (the shipped
re-ranker folder is what ``default`` names for export: models/weights/reranker-default).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from evaluation.datasets import data_root
from index.readers import read_corpus, read_queries, read_run
from index.readers.trec import ranked
from models.late_interaction import LateInteractionModel
from models.late_reranker import LateInteractionReranker
from models.registry import resolve_late_interaction


def onnx_scorer(folder: Path, graph: str, model: LateInteractionModel):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    tokens = onnxruntime.InferenceSession(
        str(folder / graph), options, providers=["CPUExecutionProvider"]
    )
    scorer = onnxruntime.InferenceSession(
        str(folder / "scorer.onnx"), options, providers=["CPUExecutionProvider"]
    )
    tok = model.encoder.backbone.tokenizer

    def encode(texts: list[str], length: int) -> tuple[np.ndarray, np.ndarray]:
        batch = tok(texts, padding=True, truncation=True, max_length=length, return_tensors="np")
        feed = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        return tokens.run(None, feed)[0], batch["attention_mask"].astype(np.float32)

    def score(query: str, docs: list[str]) -> np.ndarray:
        q, q_mask = encode([query], model.config.q_len)
        chunks = [encode(docs[i : i + 32], model.config.d_len) for i in range(0, len(docs), 32)]
        width = max(c[0].shape[1] for c in chunks)
        d = np.concatenate(
            [np.pad(c[0], ((0, 0), (0, width - c[0].shape[1]), (0, 0))) for c in chunks]
        )
        d_mask = np.concatenate(
            [np.pad(c[1], ((0, 0), (0, width - c[1].shape[1]))) for c in chunks]
        )
        return scorer.run(
            None, {"q_tokens": q, "q_mask": q_mask, "d_tokens": d[None], "d_mask": d_mask[None]}
        )[0][0]

    return score


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--onnx", type=Path, default=Path("runs/onnx-default"))
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 queries")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    n = 3 if args.quick else args.queries
    dl19 = data_root() / "trec-dl-2019-passage"
    queries = read_queries(dl19 / "queries.tsv")
    run = read_run(dl19 / "run.BM25.top100.trec")
    qids = sorted(queries)[:n]
    top = {q: [d for d, _ in ranked(run[q], 100)] for q in qids}
    needed = {d for docs in top.values() for d in docs}
    texts = {d.id: d.full_text for d in read_corpus(dl19 / "corpus.jsonl") if d.id in needed}
    model = LateInteractionModel.load(resolve_late_interaction("default"))
    torch_reranker = LateInteractionReranker(model)
    systems = {
        "pytorch fp32": lambda q, docs: torch_reranker.score(q, docs),
        "onnxruntime fp32": onnx_scorer(args.onnx, "late_tokens.onnx", model),
    }
    if (args.onnx / "late_tokens.int8.onnx").is_file():
        systems["onnxruntime int8"] = onnx_scorer(args.onnx, "late_tokens.int8.onnx", model)
    results: dict[str, dict[str, float]] = {}
    reference: dict[str, np.ndarray] = {}
    for name, score in systems.items():
        score(queries[qids[0]], [texts[d] for d in top[qids[0]][:8]])  # warm-up
        times, agreement = [], []
        for q in qids:
            docs = [texts[d] for d in top[q]]
            started = time.perf_counter()
            scores = np.asarray(score(queries[q], docs))
            times.append(1000 * (time.perf_counter() - started))
            if name == "pytorch fp32":
                reference[q] = scores
            else:
                agreement.append(
                    float(np.mean(np.argsort(-scores)[:10] == np.argsort(-reference[q])[:10]))
                )
        results[name] = {
            "p50_ms": statistics.median(times),
            "max_ms": max(times),
            "top10_same_position": statistics.mean(agreement) if agreement else 1.0,
        }
    print("| runtime | p50 ms / 100 candidates | max ms | top-10 positions equal to PyTorch |")
    print("|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['p50_ms']:.0f} | {r['max_ms']:.0f} | {r['top10_same_position']:.2f} |"
        )
    if args.out:
        args.out.write_text(
            json.dumps(
                {"queries": qids, "threads": torch.get_num_threads(), "results": results}, indent=2
            )
        )


if __name__ == "__main__":
    main()
