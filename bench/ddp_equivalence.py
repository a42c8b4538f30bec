"""Data-parallel training takes the steps of one process: train the shipped default's config
twice, once as one process and once as two torchrun ranks (gloo, CPU), interrupt both at
--stop-at and resume them to --steps, then compare their dev evaluations and final weights.

Two pairings: ``--negatives own`` (each rank's in-batch negatives from its own batch):
one process with accumulation 2 against two ranks with accumulation 1, both of batch
--batch-size; ``--negatives gathered`` (the default job setting): one process of batch
2 x --batch-size against two ranks of --batch-size whose queries meet every rank's passages.

    PYTHONPATH=. LOUPE_DATA_DIR=../shared/data python bench/ddp_equivalence.py \\
        --cache runs/repro-token-cache.npz --out runs/ddp-equivalence [--negatives gathered]

Needs the SciFact hard-negative run that configs/reranker-default.toml names (its header
says how to make it). With --cache, frozen-backbone token states come from that file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file


def train(out: Path, steps: int, args: argparse.Namespace, ranks: int) -> float:
    """Run one ``loupe train lite`` (under torchrun for ranks > 1); seconds taken."""
    gathered = args.negatives == "gathered"
    batch = args.batch_size * (2 // ranks if gathered else 1)
    accumulation = 1 if gathered else 2 // ranks
    options = [
        "train", "lite", "--config", str(args.config), "--out", str(out),
        "--max-steps", str(steps), "--batch-size", str(batch), "--quiet",
        "--set", f"eval_every={args.eval_every}", "--set", "patience=null",
        "--set", f"grad_accumulation={accumulation}",
        "--set", f"gather_negatives={'true' if gathered else 'false'}",
    ]  # fmt: skip
    if args.cache is not None:
        options += ["--cache", str(args.cache)]
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"]
        if ranks > 1
        else [sys.executable]
    )
    started = time.perf_counter()
    subprocess.run([*launcher, "-m", "loupe", *options], check=True, env=os.environ.copy())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("configs/reranker-default.toml"))
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/ddp-equivalence"))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--stop-at", type=int, default=40)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--negatives", choices=["own", "gathered"], default="own")
    args = parser.parse_args()

    seconds: dict[str, float] = {}
    for name, ranks in (("one", 1), ("two", 2)):
        out = args.out / name
        seconds[name] = train(out, args.stop_at, args, ranks)
        seconds[name] += train(out, args.steps, args, ranks)  # resumes from the checkpoint
    histories = {
        name: json.loads((args.out / name / "history.json").read_text())["history"]
        for name in ("one", "two")
    }
    one = "batch 2B" if args.negatives == "gathered" else "accumulation 2"
    two = "batch B, gathered" if args.negatives == "gathered" else "accumulation 1"
    print(f"| step | nDCG@10, 1 process x {one} | nDCG@10, 2 ranks x {two} |")
    print("|---|---|---|")
    for one, two in zip(histories["one"], histories["two"], strict=True):
        print(f"| {int(one['step'])} | {one['nDCG@10']:.4f} | {two['nDCG@10']:.4f} |")
    for path in sorted((args.out / "one" / "best").glob("*.safetensors")):
        first, second = load_file(path), load_file(args.out / "two" / "best" / path.name)
        for key, value in first.items():
            gap = float((value - second[key]).abs().max())
            print(f"{key}: largest difference {gap:.2e} (largest value {value.abs().max():.3f})")
    one_s, two_s = seconds["one"], seconds["two"]
    print(f"wall seconds, both legs: one process {one_s:.0f}, two ranks {two_s:.0f}")


if __name__ == "__main__":
    main()
