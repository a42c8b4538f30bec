"""What the issue-7 benchmarks share: timing, percentiles, tables, JSON, the machine's
description, tiny models built in-process for ``--quick``, and the DL19 re-ranking task.

Run the benchmarks from the repository root as modules, e.g.
``python -m bench.rerank_alternatives --quick``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from models.late_interaction import LateInteractionConfig, LateInteractionModel
from models.lite import ScorerConfig

T = TypeVar("T")
TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5)
    2.5
    """
    return float(np.quantile(np.asarray(values, dtype=np.float64), q))


def timed_ms(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return 1000 * (time.perf_counter() - started)


def timed_call(call: Callable[[], T]) -> tuple[T, float]:
    """``(call(), milliseconds it took)``."""
    started = time.perf_counter()
    out = call()
    return out, 1000 * (time.perf_counter() - started)


def latency_summary(samples_ms: Sequence[float]) -> dict[str, float]:
    """``p50_ms``, ``p99_ms``, ``mean_ms`` and ``n`` of latency samples."""
    return {
        "p50_ms": statistics.median(samples_ms),
        "p99_ms": percentile(samples_ms, 0.99),
        "mean_ms": statistics.fmean(samples_ms),
        "n": float(len(samples_ms)),
    }


def machine() -> dict[str, Any]:
    """The machine and libraries a result was measured on."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        info["onnxruntime"] = None
    return info


def machine_line(m: dict[str, Any]) -> str:
    """One line describing the machine of :func:`machine`."""
    return (
        f"{m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
        f"onnxruntime {m.get('onnxruntime')}, GPU {m.get('cuda') or 'none'}, {m['date']}, "
        f"load average {m.get('load_average_1m')}"
    )


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; floats are printed with 4 significant digits, None as ``n/a``.

    >>> print(markdown_table(["a", "b"], [["x", 1.23456], ["y", None]]))
    | a | b |
    |---|---|
    | x | 1.235 |
    | y | n/a |
    """

    def cell(value: object) -> str:
        if value is None:
            return "n/a"
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: Path | None, payload: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))


def tiny_bert(folder: Path, hidden: int = 32, layers: int = 2, positions: int = 512) -> Path:
    """A randomly initialised BERT with the packaged MiniLM's tokenizer (for ``--quick``)."""
    from transformers import BertConfig, BertModel

    from models.backbone import packaged_minilm_path

    source = packaged_minilm_path()
    folder.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (source / name).exists():
            shutil.copy(source / name, folder / name)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=positions,
    )
    BertModel(config).save_pretrained(folder)
    return folder


def tiny_late_model(folder: Path, d_len: int = 128) -> Path:
    """A random MaxSim late-interaction folder on a tiny BERT (for ``--quick``)."""
    from models.encoder import EncoderConfig, TextEncoder

    backbone = tiny_bert(folder / "backbone")
    encoder = TextEncoder(EncoderConfig(model=str(backbone), device="cpu", max_length=d_len))
    config = LateInteractionConfig(
        backbone=str(backbone), dim=16, q_len=32, d_len=d_len, scorer=ScorerConfig(kind="maxsim")
    )
    return LateInteractionModel(config, encoder).save(folder / "late")


WORDS = (
    *("vitamin", "bone", "density", "calcium", "market", "stock", "rates", "bank", "cat"),
    *("dog", "light", "energy", "plant", "protein", "cell", "river", "mountain", "city"),
    *("history", "music", "theory", "engine", "battery", "network", "query", "passage"),
    *("rank", "score", "model", "token", "matrix", "layer", "attention", "water", "school"),
)
"""Common English words (each one WordPiece token in MiniLM's vocabulary)."""


def synthetic_texts(n: int, words: int, seed: int = 0) -> list[str]:
    """``n`` texts of ``words`` words drawn from a small vocabulary (reproducible).

    >>> [len(t.split()) for t in synthetic_texts(2, 5)]
    [5, 5]
    """
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=words)) for _ in range(n)]


@dataclass
class RerankTask:
    """Queries, each with its candidates (ids and texts, first-stage order), and qrels."""

    name: str
    queries: dict[str, str]
    candidates: dict[str, list[str]]
    texts: dict[str, str]
    qrels: dict[str, dict[str, int]]

    def docs(self, qid: str) -> list[str]:
        return [self.texts[d] for d in self.candidates[qid]]


def dl19_task(n_queries: int | None = None, depth: int = 100) -> RerankTask:
    """DL19 passage queries with their BM25 top-``depth`` candidates and NIST judgments."""
    from evaluation.datasets import data_root
    from index.readers import read_corpus, read_queries, read_run
    from index.readers.trec import ranked, read_qrels

    folder = data_root() / "trec-dl-2019-passage"
    if not folder.is_dir():
        raise FileNotFoundError(f"DL19 data not found at {folder} (set LOUPE_DATA_DIR)")
    queries = read_queries(folder / "queries.tsv")
    qrels = read_qrels(folder / "qrels.trec")
    run = read_run(folder / "run.BM25.top100.trec")
    qids = sorted(q for q in queries if q in qrels and q in run)[:n_queries]
    candidates = {q: [d for d, _ in ranked(run[q], depth)] for q in qids}
    needed = {d for docs in candidates.values() for d in docs}
    texts = {d.id: d.full_text for d in read_corpus(folder / "corpus.jsonl") if d.id in needed}
    return RerankTask("DL19 BM25 top-100", {q: queries[q] for q in qids}, candidates, texts, qrels)


def synthetic_task(n_queries: int, depth: int, words: int = 40) -> RerankTask:
    """Synthetic queries and candidates; the first two candidates of each query are judged
    relevant (only to exercise the metric code: not a quality result)."""
    texts = synthetic_texts(n_queries * depth, words, seed=1)
    queries = dict(
        zip([f"q{i}" for i in range(n_queries)], synthetic_texts(n_queries, 6), strict=True)
    )
    candidates: dict[str, list[str]] = {}
    all_texts: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for i, qid in enumerate(queries):
        ids = [f"d{i}_{j}" for j in range(depth)]
        candidates[qid] = ids
        all_texts.update(zip(ids, texts[i * depth : (i + 1) * depth], strict=True))
        qrels[qid] = {ids[0]: 1, ids[1]: 1}
    return RerankTask("synthetic", queries, candidates, all_texts, qrels)


def ndcg_at_10(task: RerankTask, scores: dict[str, np.ndarray]) -> float:
    """nDCG@10 of the candidates re-ordered by ``scores`` (one array per query)."""
    from evaluation.metrics import evaluate

    run = {
        q: {d: float(s) for d, s in zip(task.candidates[q], scores[q], strict=True)} for q in scores
    }
    return evaluate(task.qrels, run, ["nDCG@10"], query_ids=list(scores)).aggregate["nDCG@10"]
