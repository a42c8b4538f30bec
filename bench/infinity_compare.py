"""Loupe's ``/v1/rerank`` against Infinity's ``/rerank`` on loopback, same load (issue 7).

    python -m bench.infinity_compare --infinity runs/infinity-venv/bin/infinity_emb \
        [--queries 10] [--concurrency 1 4] [--out runs/bench/infinity_compare.json]

Each request is one DL19 query with its 100 BM25 candidates (the texts, as a Cohere- or
Jina-style client sends them). Both servers run on this machine, one at a time, with the
same number of torch threads:

- **Loupe** (``loupe serve``, empty index): the shipped re-ranker, which must encode the
  100 texts (no token store for raw texts); once with the document cache off (every text
  new) and once more over the same requests with the cache on and warm (every text seen
  before, as when a client re-ranks overlapping candidate lists);
- **Infinity** (``infinity_emb v2``, torch engine): serving a sentence-transformers
  CrossEncoder on the same MiniLM-L6 backbone (saved from the packaged MiniLM with an
  untrained head: its scores mean nothing, its cost is what a MiniLM-L6 cross-encoder
  costs; quality of a trained one is in reports/lite.md).

Infinity installs in its own virtual environment (it pins ``sentence-transformers<4`` and
``numpy<2``, which conflict with Loupe's): ``python -m venv runs/infinity-venv &&
runs/infinity-venv/bin/pip install "infinity-emb[server,torch]==0.0.78" torch==2.13.0``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.harness import dl19_task, machine, machine_line, markdown_table, write_json
from bench.service_load import drive, free_port, percentile, stop_process, wait_for_ready

INFINITY = Path("runs/infinity-venv/bin/infinity_emb")


class Process:
    """A server subprocess on a loopback port, ready when ``ready_path`` answers 200."""

    def __init__(self, command: list[str], port: int, ready_path: str, log: Path, env: dict):
        self.url = f"http://127.0.0.1:{port}"
        self.ready_path = ready_path
        self.log = log.open("w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 600.0) -> None:
        try:
            wait_for_ready(self.process, self.url + self.ready_path, timeout, interval=0.5)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; see {self.log.name}") from exc

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


def loupe_server(work: Path, threads: int, cache_mb: int) -> Process:
    port = free_port()
    command = [
        sys.executable, "-m", "loupe.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--index", str(work / f"index-cache{cache_mb}"), "--torch-threads", str(threads),
        "--runtime", "torch", "--max-documents", "1000", "--log-level", "warning",
    ]  # fmt: skip
    env = {**os.environ, "LOUPE_DOCUMENT_CACHE_MB": str(cache_mb)}
    env.pop("LOUPE_API_KEY", None)
    return Process(command, port, "/ready", work / f"loupe-cache{cache_mb}.log", env)


def infinity_server(binary: Path, model: Path, work: Path, threads: int) -> Process:
    port = free_port()
    command = [
        str(binary), "v2", "--model-id", str(model), "--engine", "torch", "--device", "cpu",
        "--batch-size", "32", "--port", str(port), "--host", "127.0.0.1",
        "--no-bettertransformer",
    ]  # fmt: skip
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "INFINITY_ANONYMOUS_USAGE_STATS": "0",
        "HF_HUB_OFFLINE": "1",
    }
    return Process(command, port, "/health", work / "infinity.log", env)


def save_cross_encoder(folder: Path) -> Path:
    """A CrossEncoder (one output) on the packaged MiniLM-L6, head untrained."""
    from sentence_transformers import CrossEncoder

    from models.backbone import packaged_minilm_path

    CrossEncoder(str(packaged_minilm_path()), num_labels=1, device="cpu").save(str(folder))
    return folder


def measure(
    url: str, path: str, bodies: list[dict], concurrency: Sequence[int], time_limit: float
) -> list[dict[str, Any]]:
    """One warm-up request, then each concurrency level over all ``bodies``."""

    async def run() -> list[dict[str, Any]]:
        rows = []
        async with httpx.AsyncClient(base_url=url, timeout=600) as client:
            (await client.post(path, json=bodies[0])).raise_for_status()
            for level in concurrency:
                latencies, statuses, seconds = await drive(client, path, bodies, level, time_limit)
                rows.append(
                    {
                        "concurrency": level,
                        "requests": len(latencies),
                        "statuses": statuses,
                        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
                        "p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
                        "requests_per_s": round(len(latencies) / seconds, 3),
                    }
                )
        return rows

    return asyncio.run(run())


def report_markdown(payload: dict[str, Any]) -> str:
    rows = []
    for name, cells in payload["servers"].items():
        for cell in cells:
            rows.append(
                [
                    name, cell["concurrency"], cell["requests"], cell["p50_ms"], cell["p99_ms"],
                    cell["requests_per_s"],
                ]
            )  # fmt: skip
    table = markdown_table(
        ["server", "clients", "requests", "p50 ms", "p99 ms", "requests/s"], rows
    )
    ratios = payload.get("ratios", {})
    lines = [f"- {k}: {v}x" for k, v in ratios.items()]
    return "\n".join(
        [
            machine_line(payload["machine"]) + "\n",
            f"{payload['queries']} DL19 queries x 100 BM25 candidates per request, "
            f"{payload['threads']} torch threads per server.\n",
            table,
            "",
            "Loupe / Infinity requests per second at equal clients:",
            *lines,
        ]
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--infinity", type=Path, default=Path("runs/infinity-venv/bin/infinity_emb")
    )
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds per cell")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if not args.infinity.is_file():
        raise SystemExit(f"no Infinity at {args.infinity} (see this script's docstring)")
    task = dl19_task(args.queries)
    loupe_bodies = [
        {"query": text, "documents": task.docs(qid), "top_n": 10}
        for qid, text in task.queries.items()
    ]
    servers: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="loupe-infinity-") as tmp:
        work = Path(tmp)
        model = save_cross_encoder(work / "minilm-cross-encoder")
        infinity_bodies = [
            {"query": b["query"], "documents": b["documents"], "model": str(model)}
            for b in loupe_bodies
        ]
        plan = [
            ("Loupe /v1/rerank, cache off", lambda: loupe_server(work, args.threads, 0),
             "/v1/rerank", loupe_bodies, False),
            ("Loupe /v1/rerank, cache warm", lambda: loupe_server(work, args.threads, 256),
             "/v1/rerank", loupe_bodies, True),
            ("Infinity /rerank (MiniLM-L6 CrossEncoder)",
             lambda: infinity_server(args.infinity, model, work, args.threads),
             "/rerank", infinity_bodies, False),
        ]  # fmt: skip
        for name, start, path, bodies, warm in plan:
            server = start()
            try:
                server.wait_ready()
                if warm:  # every text seen once before the measured passes
                    measure(server.url, path, bodies, [1], args.time_limit)
                servers[name] = measure(server.url, path, bodies, args.concurrency, args.time_limit)
                print(name, servers[name], flush=True)
            finally:
                server.stop()
    infinity = servers["Infinity /rerank (MiniLM-L6 CrossEncoder)"]
    ratios = {}
    for name, cells in servers.items():
        if name.startswith("Loupe"):
            for mine, theirs in zip(cells, infinity, strict=True):
                if theirs["requests_per_s"]:
                    key = f"{name}, {mine['concurrency']} clients"
                    ratios[key] = round(mine["requests_per_s"] / theirs["requests_per_s"], 2)
    payload = {
        "benchmark": "infinity_compare",
        "machine": machine(),
        "queries": len(loupe_bodies),
        "threads": args.threads,
        "servers": servers,
        "ratios": ratios,
    }
    write_json(args.out, payload)
    print(report_markdown(payload))
    return payload


if __name__ == "__main__":
    main()
