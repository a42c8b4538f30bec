"""Where the time of one ``/v1/search`` request goes (issue 7, reports/performance.md).

    python -m bench.search_profile --index runs/scifact-index-lite [--requests 100]
    python -m bench.search_profile --quick     # a tiny random model and index (CI)

The service's engine is loaded as ``loupe serve`` loads it (default encoder and re-ranker,
``--runtime``), and each request goes through the real app (FastAPI ``TestClient``: routing,
validation, the micro-batcher, JSON). Two measurements:

- **stages**: ``cProfile`` over the engine's ``search_many`` (the model thread's work), run
  directly for the same queries; the cumulative time of the functions that make up each
  stage (tokenise, transformer forward, FAISS, docstore gather, token-store gather, score)
  per request;
- **end to end**: HTTP round trips through the app, whose difference from the engine time
  is routing, validation, queueing and serialisation.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness import machine, machine_line, markdown_table, write_json

STAGES: dict[str, tuple[str, ...]] = {
    "first-stage query encode (tokenise, forward, pool)": (
        "encoder.py:encode",
        "engine.py:_encode_search_queries",
    ),
    "FAISS search": ("faiss_index.py:search", "vector_index.py:search"),
    "docstore gather (SQLite)": ("docstore.py:get_by_keys",),
    "token-store gather": ("searcher.py:token_matrices",),
    "re-ranker query encode (tokenise, forward)": ("late_reranker.py:query_matrices",),
    # zero when the re-ranker shares the encoder: its query matrix then comes from the
    # first stage's pass (projected inside _encode_search_queries)
    "pad stored matrices": ("late_interaction.py:pad_matrices",),
    "late-interaction scoring": ("late_interaction.py:forward",),
}
"""Each stage is the cumulative time of its largest matching function (``file:function``;
a function that calls itself or a nested one of the same name is counted once)."""
TOKENISE = "tokenization_utils_base.py:__call__"
"""Tokenisation, part of both query encodes (reported on its own line)."""


def _cumulative(raw: dict[Any, Any], pattern: str) -> float:
    """Largest cumulative seconds of a function matching ``file-suffix:function``."""
    suffix, _, name = pattern.partition(":")
    return max(
        (
            value[3]
            for (file, _line, function), value in raw.items()
            if file.endswith(suffix) and function == name
        ),
        default=0.0,
    )


def stage_times(stats: pstats.Stats, requests: int) -> dict[str, float]:
    """ms per request of each stage, from cumulative times in ``stats``."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    return {
        stage: round(1000 * max(_cumulative(raw, p) for p in patterns) / requests, 2)
        for stage, patterns in STAGES.items()
    }


def tokenise_ms(stats: pstats.Stats, requests: int) -> float:
    return round(1000 * _cumulative(stats.stats, TOKENISE) / requests, 2)  # type: ignore[attr-defined]


def _queries(count: int, quick: bool) -> list[str]:
    if quick:
        return [f"query number {i} about proteins and cells" for i in range(count)]
    from evaluation.datasets import data_root
    from index.readers.queries import read_queries

    queries = list(read_queries(data_root() / "beir-scifact" / "queries.jsonl").values())
    return (queries * (count // max(len(queries), 1) + 1))[:count]


def _quick_setup(work: Path) -> tuple[Path, str, str]:
    """A tiny random encoder and MaxSim re-ranker, and a 300-passage index with a token store:
    ``(index, encoder, reranker)``."""
    from bench.harness import tiny_late_model
    from bench.service_memory import build, write_corpus

    late = tiny_late_model(work / "models")
    encoder = str(late.parent / "backbone")
    build(write_corpus(work / "corpus.jsonl", 300), work / "index", encoder, str(late), "torch")
    return work / "index", encoder, str(late)


def build_scifact_index(out: Path) -> None:
    """SciFact (5,183 passages) with the default encoder, token store and BM25."""
    from bench.service_memory import build
    from evaluation.datasets import data_root

    build(data_root() / "beir-scifact", out, "default", "default", "torch")


def profile(
    index: Path, encoder: str, reranker: str, runtime: str, requests: int, quick: bool
) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.engine import SearchJob
    from service.loading import load_engine
    from service.settings import ServiceSettings

    settings = ServiceSettings(
        index=index, encoder=encoder, reranker=reranker, runtime=runtime, device="cpu"
    )
    queries = _queries(requests, quick)
    engine = load_engine(settings)
    engine.search_many([SearchJob(queries[0])])  # warm-up
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for query in queries:
        engine.search_many([SearchJob(query)])
    profiler.disable()
    engine_ms = 1000 * (time.perf_counter() - started) / requests
    stats = pstats.Stats(profiler)
    stages = stage_times(stats, requests)
    engine.close()

    http_ms: list[float] = []
    server_timings: list[dict[str, float]] = []
    repeat_ms: list[float] = []
    repeat_timings: list[dict[str, float]] = []
    with TestClient(create_app(settings)) as client:
        deadline = time.time() + 600
        while client.get("/ready").status_code != 200 and time.time() < deadline:
            time.sleep(0.2)
        client.post("/v1/search", json={"query": queries[0]})
        # the same queries again: their encodings come from the query cache
        for round_ms, round_timings in ((http_ms, server_timings), (repeat_ms, repeat_timings)):
            for query in queries:
                start = time.perf_counter()
                response = client.post("/v1/search", json={"query": query, "top_n": 10})
                round_ms.append(1000 * (time.perf_counter() - start))
                response.raise_for_status()
                round_timings.append(response.json()["timings"])
    top = sorted(
        (
            (value[3], f"{Path(file).name}:{function}")
            for (file, _l, function), value in stats.stats.items()  # type: ignore[attr-defined]
        ),
        reverse=True,
    )[:25]
    return {
        "benchmark": "search_profile",
        "machine": machine(),
        "requests": requests,
        "runtime": runtime,
        "engine_ms_per_request": round(engine_ms, 2),
        "stages_ms": stages,
        "of_which_tokenise_ms": tokenise_ms(stats, requests),
        "other_engine_ms": round(engine_ms - sum(stages.values()), 2),
        "http_p50_ms": round(statistics.median(http_ms), 2),
        "server_timings_p50_ms": {
            key: round(statistics.median(t[key] for t in server_timings), 2)
            for key in server_timings[0]
        },
        "http_repeat_p50_ms": round(statistics.median(repeat_ms), 2),
        "repeat_server_timings_p50_ms": {
            key: round(statistics.median(t[key] for t in repeat_timings), 2)
            for key in repeat_timings[0]
        },
        "top_cumulative": [[name, round(1000 * t / requests, 2)] for t, name in top],
    }


def report_markdown(payload: dict[str, Any]) -> str:
    rows = [[stage, ms] for stage, ms in payload["stages_ms"].items()]
    rows.append(["other engine work (Python, hits, sorting)", payload["other_engine_ms"]])
    rows.append(["(of the encodes: tokenisation)", payload["of_which_tokenise_ms"]])
    rows.append(["engine total", payload["engine_ms_per_request"]])
    http = payload["http_p50_ms"]
    rows.append(["HTTP round trip p50 (routing, validation, queue, JSON)", http])
    if "http_repeat_p50_ms" in payload:
        rows.append(
            [
                "HTTP round trip p50, the same queries again (query cache)",
                payload["http_repeat_p50_ms"],
            ]
        )
    header = f"{payload['requests']} SciFact queries, runtime {payload['runtime']}"
    if "machine" in payload:
        header = f"{machine_line(payload['machine'])}\n\n{header}"
    table = markdown_table(["stage of one /v1/search (100 candidates, top 10)", "ms"], rows)
    return f"{header}; ms per request.\n\n{table}"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--index",
        type=Path,
        default=Path("runs/scifact-index-lite"),
        help="an index built with --token-store (built from SciFact here if absent)",
    )
    parser.add_argument("--encoder", default="default")
    parser.add_argument("--reranker", default="default")
    parser.add_argument("--runtime", default="torch", choices=["auto", "torch", "onnx"])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            index, encoder, reranker = _quick_setup(Path(tmp))
            payload = profile(index, encoder, reranker, args.runtime, 5, quick=True)
        else:
            if not (args.index / "manifest.json").is_file():
                build_scifact_index(args.index)
            payload = profile(
                args.index, args.encoder, args.reranker, args.runtime, args.requests, False
            )
    print(report_markdown(payload))
    print(json.dumps(payload["top_cumulative"][:15], indent=1))
    write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
