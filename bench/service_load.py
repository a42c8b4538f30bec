"""Loopback load test of the Loupe service: throughput and latency, batching on and off.

It starts two ``loupe serve`` subprocesses on free 127.0.0.1 ports, each with a fresh
index holding the same synthetic corpus: one with micro-batching (``--batch-size``), one
without (batch size 1). Then, for ``/v1/rerank`` (``--docs`` documents per request) and
``/v1/search`` (``--candidates`` candidates, re-ranked) at 1, 8 and 32 concurrent httpx
clients, it runs the batched cell and the unbatched cell back to back, so both see the
same background load. Each cell sends ``max(--min-requests, --requests-per-client x
clients)`` requests and stops sending after ``--cell-time-limit`` seconds; cells that would
start after ``--time-budget`` seconds are skipped and reported as such. The JSON file is
rewritten after every cell; a markdown table goes to stdout.

    python bench/service_load.py --out reports/service_load.json

Cost: each request re-ranks ``--docs`` passages with the transformer, so a cell with 32
clients is 32 such requests; on a busy 2-core CPU one took seconds (reports/service.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

_WORD_TEXT = (
    "retrieval ranking query document passage index vector dense sparse token encoder "
    "model score relevance search engine neural network transformer attention layer "
    "training data loss gradient batch latency throughput memory cache server client "
    "request response service cluster replica shard storage disk network protocol "
    "loupe jeweller lens glass magnify detail stone diamond gold silver ring watch "
    "river mountain forest ocean island desert valley city village road bridge tower "
    "history science biology chemistry physics medicine protein cell gene virus drug "
    "economy market price trade bank money policy law court election government nation "
    "music film art book poem novel author painter song theatre museum gallery festival"
)
WORDS = tuple(_WORD_TEXT.split(" "))


def synthetic_text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty list.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50), percentile([1.0, 2.0, 3.0, 4.0], 99)
    (2.0, 4.0)
    """
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


@dataclass
class Cell:
    mode: str
    endpoint: str
    concurrency: int
    requests: int = 0
    ok: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    throughput_rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    mean_ms: float = 0.0

    @property
    def errors_5xx(self) -> int:
        return sum(n for code, n in self.status_counts.items() if code.startswith("5"))


class Server:
    """``loupe serve`` in a subprocess on a free loopback port."""

    def __init__(
        self, args: argparse.Namespace, max_batch_size: int, max_wait_ms: float, workdir: Path
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        name = f"batch{max_batch_size}-wait{max_wait_ms:g}"
        self.log = (workdir / f"server-{name}.log").open("w")
        command = [
            sys.executable, "-m", "loupe.cli", "serve",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--index", str(workdir / f"index-{name}"),
            "--encoder", args.encoder,
            "--reranker", args.reranker,
            "--max-batch-size", str(max_batch_size),
            "--max-wait-ms", str(max_wait_ms),
            "--queue-size", "512",
            "--log-level", "warning",
        ]  # fmt: skip
        env = {**os.environ, "LOUPE_LOG_LEVEL": "warning"}
        env.pop("LOUPE_API_KEY", None)
        if args.torch_threads:
            env["LOUPE_TORCH_THREADS"] = str(args.torch_threads)
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 300.0) -> dict:
        return dict(wait_for_ready(self.process, f"{self.url}/ready", timeout).json())

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


def wait_for_ready(
    process: subprocess.Popen, url: str, timeout: float, interval: float = 0.2
) -> httpx.Response:
    """Poll ``url`` until it answers 200 (returned); fail if ``process`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(interval)
    raise TimeoutError(f"{url} not ready after {timeout:.0f} s")


def stop_process(process: subprocess.Popen) -> None:
    """Terminate, and kill if it has not exited within a minute."""
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()


async def drive(
    client: httpx.AsyncClient,
    path: str,
    bodies: list[dict],
    concurrency: int,
    time_limit: float,
) -> tuple[list[float], dict[str, int], float]:
    """Send ``bodies`` from ``concurrency`` workers; latencies (ms), status counts, seconds.

    No request is sent after ``time_limit`` seconds; those in flight are awaited.
    """
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    queue = list(reversed(bodies))
    started = time.perf_counter()
    deadline = started + time_limit

    async def worker() -> None:
        while queue and time.perf_counter() < deadline:
            body = queue.pop()
            t0 = time.perf_counter()
            try:
                response = await client.post(path, json=body)
                code = str(response.status_code)
            except httpx.HTTPError as exc:
                code = f"transport:{type(exc).__name__}"
            if code == "200":
                latencies.append((time.perf_counter() - t0) * 1000)
            statuses[code] = statuses.get(code, 0) + 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, statuses, time.perf_counter() - started


def requests_for(concurrency: int, args: argparse.Namespace) -> int:
    return max(args.min_requests, args.requests_per_client * concurrency)


class Workload:
    """Deterministic corpus and request bodies (the same for both modes)."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        rng = random.Random(0)
        self.corpus = [
            {"id": f"d{i}", "text": synthetic_text(rng, args.doc_words)}
            for i in range(args.corpus_size)
        ]
        self.rng = rng

    def bodies(self, endpoint: str, count: int) -> list[dict]:
        texts = [d["text"] for d in self.corpus]
        out: list[dict[str, object]] = []
        for _ in range(count):
            query = synthetic_text(self.rng, 6)
            if endpoint == "rerank":
                out.append({"query": query, "documents": self.rng.sample(texts, self.args.docs)})
            else:
                out.append(
                    {
                        "query": query,
                        "top_n": 10,
                        "candidates": self.args.candidates,
                        "rerank": True,
                    }
                )
        return out


PATHS = {"rerank": "/v1/rerank", "search": "/v1/search"}


async def load_corpus(client: httpx.AsyncClient, corpus: list[dict]) -> None:
    for start in range(0, len(corpus), 250):
        response = await client.post(
            "/v1/documents", json={"documents": corpus[start : start + 250]}
        )
        response.raise_for_status()


async def run_cells(
    urls: dict[str, str], args: argparse.Namespace, record: Callable[[Cell], None]
) -> None:
    workload = Workload(args)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    clients = {
        mode: httpx.AsyncClient(base_url=url, timeout=args.time_budget + 60, limits=limits)
        for mode, url in urls.items()
    }
    try:
        for client in clients.values():
            await load_corpus(client, workload.corpus)
        started = time.perf_counter()  # the budget counts from here
        for endpoint in args.endpoints:
            warmup = workload.bodies(endpoint, 2)
            for client in clients.values():
                await drive(client, PATHS[endpoint], warmup, 1, 60)
            for concurrency in args.concurrency:
                bodies = workload.bodies(endpoint, requests_for(concurrency, args))
                for mode, client in clients.items():
                    cell = Cell(mode, endpoint, concurrency)
                    remaining = args.time_budget - (time.perf_counter() - started)
                    if remaining <= 0:
                        cell.status_counts = {"skipped: time budget spent": len(bodies)}
                        record(cell)
                        continue
                    latencies, statuses, seconds = await drive(
                        client,
                        PATHS[endpoint],
                        bodies,
                        concurrency,
                        min(args.cell_time_limit, remaining),
                    )
                    cell.requests, cell.ok = sum(statuses.values()), len(latencies)
                    cell.status_counts, cell.seconds = statuses, round(seconds, 3)
                    if latencies:
                        cell.throughput_rps = round(len(latencies) / seconds, 3)
                        cell.p50_ms = round(percentile(latencies, 50), 1)
                        cell.p99_ms = round(percentile(latencies, 99), 1)
                        cell.mean_ms = round(statistics.fmean(latencies), 1)
                    record(cell)
    finally:
        for client in clients.values():
            await client.aclose()


def table(cells: list[Cell]) -> str:
    lines = [
        "| endpoint | clients | batching | requests (ok) | req/s | p50 ms | p99 ms | 5xx |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for cell in cells:
        if not cell.requests:
            lines.append(
                f"| {cell.endpoint} | {cell.concurrency} | {cell.mode} | skipped (time budget) "
                "| | | | |"
            )
            continue
        lines.append(
            f"| {cell.endpoint} | {cell.concurrency} | {cell.mode} | {cell.requests} ({cell.ok}) "
            f"| {cell.throughput_rps:.2f} | {cell.p50_ms:.0f} | {cell.p99_ms:.0f} "
            f"| {cell.errors_5xx} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("reports/service_load.json"))
    parser.add_argument("--encoder", default="default")
    parser.add_argument("--reranker", default="default")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--docs", type=int, default=100, help="documents per rerank request")
    parser.add_argument("--candidates", type=int, default=100, help="search candidates")
    parser.add_argument("--corpus-size", type=int, default=500)
    parser.add_argument("--doc-words", type=int, default=30)
    parser.add_argument("--requests-per-client", type=int, default=1)
    parser.add_argument("--min-requests", type=int, default=8)
    parser.add_argument("--cell-time-limit", type=float, default=25.0, help="seconds per cell")
    parser.add_argument(
        "--time-budget", type=float, default=150.0, help="measuring seconds; no cell starts after"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="max batch when batching")
    parser.add_argument("--max-wait-ms", type=float, default=0.0)
    parser.add_argument(
        "--compare-max-wait-ms",
        type=float,
        default=None,
        help="compare two batched servers, --max-wait-ms against this, instead of batching "
        "against none",
    )
    parser.add_argument(
        "--endpoints", nargs="+", choices=sorted(PATHS), default=["rerank", "search"]
    )
    parser.add_argument("--torch-threads", type=int, default=None)
    return parser.parse_args(argv)


def server_modes(args: argparse.Namespace) -> list[tuple[str, int, float]]:
    """``(mode, max batch size, max wait ms)`` of the two servers compared."""
    if args.compare_max_wait_ms is None:
        return [("batched", args.batch_size, args.max_wait_ms), ("unbatched", 1, args.max_wait_ms)]
    return [
        (f"wait {wait:g} ms", args.batch_size, wait)
        for wait in (args.max_wait_ms, args.compare_max_wait_ms)
    ]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # so that the servers are stopped
    started = time.perf_counter()
    cells: list[Cell] = []
    result: dict = {
        "command": " ".join(["python", Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
        },
        "settings": {k: str(v) for k, v in vars(args).items()},
        "servers": {},
        "complete": False,
        "cells": [],
    }

    def write() -> None:
        result["total_seconds"] = round(time.perf_counter() - started, 1)
        result["load_average_at_end"] = os.getloadavg()
        result["cells"] = [asdict(c) | {"errors_5xx": c.errors_5xx} for c in cells]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")

    def record(cell: Cell) -> None:
        cells.append(cell)
        print(f"  {cell.mode:9} {cell.endpoint:6} c={cell.concurrency:<3} {cell.ok}/{cell.requests}"
              f" ok {cell.throughput_rps:.2f} req/s p50 {cell.p50_ms:.0f} ms p99 {cell.p99_ms:.0f}"
              f" ms {cell.status_counts}", flush=True)  # fmt: skip
        write()

    servers: dict[str, Server] = {}
    with tempfile.TemporaryDirectory(prefix="loupe-load-") as tmp:
        try:
            for mode, batch, wait in server_modes(args):
                servers[mode] = Server(args, batch, wait, Path(tmp))
            for mode, server in servers.items():
                ready = server.wait_ready()
                models = httpx.get(f"{server.url}/v1/models", timeout=10).json()
                result["servers"][mode] = {"url": server.url, "ready": ready, "models": models}
                print(f"{mode}: {server.url} {models['data'][0]['id']}", flush=True)
            urls = {mode: server.url for mode, server in servers.items()}
            asyncio.run(run_cells(urls, args, record))
            result["complete"] = True
        finally:
            for server in servers.values():
                server.stop()
            write()
    print()
    print(table(cells))
    print(f"\nwrote {args.out} in {result['total_seconds']}s")


if __name__ == "__main__":
    main()
