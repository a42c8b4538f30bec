"""Check Loupe's CUDA paths on a GPU machine and print what it saw (JSON with --out).

Encoder, late-interaction and cross-encoder scores on CUDA against the CPU, GPU encode
throughput, and which of faiss-gpu and onnxruntime's CUDA provider are importable. Usage:

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
    report |= cross_encoder_check("cuda", "cpu", texts[:100])

    for name, probe in (("faiss_gpus", _faiss_gpus), ("onnxruntime_providers", _ort_providers)):
        try:
            report[name] = probe()
        except Exception as exc:  # an absent optional package is a finding, not a failure
            report[name] = f"unavailable: {type(exc).__name__}: {exc}"
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


def cross_encoder_check(device: str, reference: str, texts: list[str]) -> dict[str, object]:
    """A MiniLM cross-encoder (seeded random head) on ``device`` against ``reference``:
    the largest score difference, whether the ranking agrees, and ms for the texts.

    Runs anywhere: ``cross_encoder_check("cpu", "cpu", ...)`` checks the script itself."""
    import tempfile

    from bench.cross_encoder_parity import build_cross_encoder
    from models.cross_encoder import CrossEncoderConfig, CrossEncoderReranker

    with tempfile.TemporaryDirectory() as tmp:
        folder = str(build_cross_encoder(Path(tmp) / "ce", seed=0))
        on = CrossEncoderReranker.load(CrossEncoderConfig(folder, device=device))
        off = CrossEncoderReranker.load(CrossEncoderConfig(folder, device=reference))
    query = "topic 3 words"
    on.score(query, texts[:8])  # warm-up
    started = time.perf_counter()
    scores = on.score(query, texts)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elapsed_ms = 1000 * (time.perf_counter() - started)
    expected = off.score(query, texts)
    return {
        "cross_encoder_max_abs_diff": float(np.abs(scores - expected).max()),
        "cross_encoder_same_top10": bool(
            (np.argsort(-scores)[:10] == np.argsort(-expected)[:10]).all()
        ),
        f"cross_encoder_ms_{len(texts)}_pairs": elapsed_ms,
    }


def _faiss_gpus() -> int:
    import faiss

    return int(faiss.get_num_gpus())


def _ort_providers() -> list[str]:
    import onnxruntime

    return list(onnxruntime.get_available_providers())


if __name__ == "__main__":
    main()
