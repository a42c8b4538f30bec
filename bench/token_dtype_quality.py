"""Ranking quality of the shipped re-ranker when its stored token matrices are float16, int8
or int4 (``index.token_quantization``, the token store's own code), from cached states.

Both evaluation sets of reports/lite.md (DL19 BM25 top-100, SciFact test dense top-100):
queries are projected as served, each candidate matrix goes through the store's encode and
decode, then the scorer. ``loupe eval --index`` on an index in each form (see
``bench/token_store_dtypes.py``) gives the same SciFact numbers through the product path.

    PYTHONPATH=. python bench/token_dtype_quality.py --cache runs/lite-exp/token-cache.npz
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bench.lite_experiment import MEASURES, eval_sets, projected_candidates
from evaluation.datasets import data_root
from evaluation.metrics import evaluate, format_table
from index.token_quantization import TokenDtype, decode_tokens, encode_tokens
from models.late_interaction import LateInteractionModel, pad_matrices
from models.late_reranker import LateInteractionReranker
from models.registry import load_reranker
from training.token_cache import TokenCache


def stored_form(matrices: torch.Tensor, mask: torch.Tensor, dtype: TokenDtype) -> torch.Tensor:
    """``(n, tokens, dim)`` projected matrices after a round trip through the store."""
    decoded = []
    for matrix, row_mask in zip(matrices, mask, strict=True):
        rows = matrix[row_mask.bool()].numpy()
        payload, scales = encode_tokens(rows, dtype)
        decoded.append(decode_tokens(payload, scales, dtype, rows.shape[1]))
    padded, _ = pad_matrices(decoded)
    out = torch.zeros_like(matrices)
    out[:, : padded.shape[1]] = padded
    return out


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path("runs/lite-exp/token-cache.npz"))
    parser.add_argument("--scifact-index", type=Path, default=Path("runs/scifact-index"))
    parser.add_argument("--reranker", default="default")
    parser.add_argument("--out", type=Path, default=Path("runs/token-dtypes/quality.json"))
    args = parser.parse_args()
    reranker = load_reranker(args.reranker, device="cpu")
    if not isinstance(reranker, LateInteractionReranker):
        raise SystemExit(f"{args.reranker} is not a late-interaction re-ranker")
    model: LateInteractionModel = reranker.model
    model.eval()
    sets = eval_sets(data_root(), args.scifact_index)
    cache = TokenCache.load(args.cache)
    rows: dict[str, dict[str, float]] = {}
    for set_name, spec in sets.items():
        runs: dict[TokenDtype, dict[str, dict[str, float]]] = {d: {} for d in TokenDtype}
        for qid, docs, q, q_mask, d, d_mask in projected_candidates(model, cache, spec):
            for dtype in TokenDtype:
                stored = stored_form(d, d_mask, dtype)
                scores = model(q, q_mask, stored[None], d_mask[None])[0].tolist()
                runs[dtype][qid] = dict(zip(docs, scores, strict=True))
        for dtype in TokenDtype:
            result = evaluate(spec.qrels, runs[dtype], MEASURES, query_ids=spec.queries)
            bytes_per_token = dtype.bytes_per_token(model.dim)
            rows[f"{set_name} | {dtype.value} ({bytes_per_token} B/token)"] = result.aggregate
    print(format_table(rows, MEASURES))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"reranker": args.reranker, "metrics": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
