"""LAuReL at initialisation on the packaged MiniLM: outputs vs the plain model, and the
parameters each variant adds (reports/laurel.md).

    python bench/laurel_identity.py [--rank 16] [--window 2]
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoModel, AutoTokenizer

from models.backbone import resolve_model_path
from models.laurel import LaurelConfig, apply_laurel, count_added_parameters

VARIANTS = [("rw",), ("lr",), ("pa",), ("rw", "lr"), ("rw", "lr", "pa")]
TEXTS = [
    "what is the capital of australia",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The 2019 TREC Deep Learning track evaluated passage ranking with graded judgments.",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--window", type=int, default=2)
    args = parser.parse_args()
    path = resolve_model_path("default")
    tokenizer = AutoTokenizer.from_pretrained(path)
    inputs = tokenizer(TEXTS, padding=True, return_tensors="pt")
    plain = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
    base_params = sum(p.numel() for p in plain.parameters())
    with torch.no_grad():
        expected = plain(**inputs).last_hidden_state
    print(
        f"MiniLM: {base_params:,} parameters; one extra layer: "
        f"{sum(p.numel() for p in plain.encoder.layer[0].parameters()):,}"
    )
    print("| variant | max abs difference at init | added parameters | % of MiniLM |")
    print("|---|---|---|---|")
    for variants in VARIANTS:
        model = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
        apply_laurel(model, LaurelConfig(variants, rank=args.rank, pa_window=args.window))
        with torch.no_grad():
            diff = float((model(**inputs).last_hidden_state - expected).abs().max())
        added = count_added_parameters(model)
        print(
            f"| {'+'.join(v.upper() for v in variants)} | {diff:.1e} | {added:,} | "
            f"{100 * added / base_params:.2f}% |"
        )


if __name__ == "__main__":
    main()
