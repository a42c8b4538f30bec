"""Memory of the service: peak RSS of a ``loupe serve`` process holding the default models and
an index of N passages (vectors, token store, BM25), and bytes per indexed passage by
component (issue 7).

    python -m bench.service_memory [--passages 100000] [--index runs/bench/memory-index]
        [--runtime auto] [--out runs/bench/service_memory.json]
    python -m bench.service_memory --quick     # tiny random models, 300 passages

Synthetic passages (60 one-token words each: about 62 tokens) are indexed with
``index.builder.build_index`` (dense vectors, ``--token-store``, ``--bm25``) by the same models
the service loads; ``--index`` keeps the built index there and reuses it on later runs (a
100k-passage build encodes every passage: tens of minutes on two CPU cores). The service
runs as its own process (``python -m loupe.cli serve``); its resident set is read from
``/proc/<pid>/status`` when ready (``VmRSS``, ``VmHWM``) and again after it has answered
``--requests`` searches (100 candidates re-ranked from the token store) and one /v1/rerank
of 100 passages. File sizes are taken before the service starts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench.harness import (
    machine,
    machine_line,
    markdown_table,
    synthetic_texts,
    tiny_late_model,
    write_json,
)

COMPONENTS = {
    "vectors (FAISS)": ("vectors-",),
    "docstore (SQLite)": ("docstore-",),
    "token store": ("tokens-",),
    "BM25": ("bm25-",),
    "manifest": ("manifest.json",),
}


def write_corpus(path: Path, n: int, words: int = 60) -> Path:
    with path.open("w") as out:
        for start in range(0, n, 10_000):
            texts = synthetic_texts(min(10_000, n - start), words, seed=start)
            for i, text in enumerate(texts, start=start):
                out.write(json.dumps({"_id": f"p{i}", "text": text}) + "\n")
    return path


def build(corpus: Path, out: Path, encoder: str, reranker: str, runtime: str) -> None:
    from index.builder import IndexBuildConfig, build_index
    from models.runtime import RuntimeConfig

    build_index(
        IndexBuildConfig(
            corpus=corpus,
            out=out,
            model=encoder,
            device="cpu",
            show_progress=False,
            token_store=True,
            reranker=reranker,
            bm25=True,
            runtime=RuntimeConfig(runtime),  # type: ignore[arg-type]
        )
    )


def folder_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def component_bytes(index: Path) -> dict[str, int]:
    """Bytes on disk of each index component."""
    sizes = dict.fromkeys(COMPONENTS, 0)
    for path in index.iterdir():
        for component, prefixes in COMPONENTS.items():
            if path.name.startswith(prefixes):
                sizes[component] += folder_bytes(path)
    return sizes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak) of a process, in KiB (Linux)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def serve_and_measure(
    index: Path, encoder: str, reranker: str, runtime: str, requests: int, timeout_s: float
) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "loupe.cli", "serve",
        "--port", str(port), "--index", str(index),
        "--encoder", encoder, "--reranker", reranker,
        "--device", "cpu", "--runtime", runtime, "--log-level", "warning",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOUPE_") or k in _KEEP_ENV}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    started = time.monotonic()
    try:
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                raise RuntimeError(f"loupe serve exited with {process.returncode}:\n{output}")
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"loupe serve not ready after {timeout_s:.0f}s")
            try:
                if httpx.get(f"{url}/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        ready_s = time.monotonic() - started
        at_ready = memory_kib(process.pid)
        models = httpx.get(f"{url}/v1/models", timeout=30).json()["data"]
        queries = synthetic_texts(requests, 6, seed=99)
        with httpx.Client(base_url=url, timeout=300) as client:
            for query in queries:
                body = {"query": query, "top_n": 10, "candidates": 100, "rerank": True}
                client.post("/v1/search", json=body).raise_for_status()
            docs = synthetic_texts(100, 60, seed=7)
            client.post(
                "/v1/rerank", json={"query": queries[0], "documents": docs}
            ).raise_for_status()
        after = memory_kib(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
    return {
        "ready_seconds": ready_s,
        "rss_ready_mib": at_ready["VmRSS"] / 1024,
        "peak_ready_mib": at_ready["VmHWM"] / 1024,
        "rss_after_requests_mib": after["VmRSS"] / 1024,
        "peak_after_requests_mib": after["VmHWM"] / 1024,
        "runtimes": {m["role"]: m.get("runtime") for m in models},
    }


_KEEP_ENV = ("LOUPE_CACHE_DIR", "LOUPE_DATA_DIR")


def report_markdown(payload: dict[str, Any]) -> str:
    n = payload["passages"]
    s = payload["service"]
    memory = markdown_table(
        ["passages", "RSS when ready MiB", "peak when ready MiB", "peak after requests MiB",
         "start-up s", "encoder runtime"],
        [[n, s["rss_ready_mib"], s["peak_ready_mib"], s["peak_after_requests_mib"],
          s["ready_seconds"], (s["runtimes"].get("encoder") or {}).get("runtime")]],
    )  # fmt: skip
    sizes = payload["bytes"]
    per_passage = markdown_table(
        ["component", "MiB on disk", "bytes / passage"],
        [[k, v / 2**20, v / n] for k, v in sizes.items()]
        + [["total", sum(sizes.values()) / 2**20, sum(sizes.values()) / n]],
    )
    lines = [
        f"{payload['models']}; {machine_line(payload['machine'])}.",
        "",
        memory,
        "",
        per_passage,
    ]
    if payload.get("quick"):
        lines.insert(
            0, "**Quick mode: tiny random models, a few hundred passages; not a result.**\n"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--index", type=Path, help="build the index here (reused if present)")
    parser.add_argument("--runtime", default="auto", choices=["auto", "torch", "onnx"])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to get ready")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="loupe-memory-") as tmp:
        work = Path(tmp)
        if args.quick:
            late = tiny_late_model(work / "models")
            encoder, reranker, n, requests = str(late.parent / "backbone"), str(late), 300, 3
            models = "tiny random BERT encoder and MaxSim re-ranker"
        else:
            encoder, reranker, n, requests = "default", "default", args.passages, args.requests
            models = "default encoder (MiniLM) and shipped re-ranker"
        index = args.index or work / "index"
        if not (index / "manifest.json").is_file():
            corpus = write_corpus(work / "corpus.jsonl", n)
            build(corpus, index, encoder, reranker, args.runtime)
        sizes = component_bytes(index)
        count = json.loads((index / "manifest.json").read_text())["count"]
        service = serve_and_measure(
            index, encoder, reranker, args.runtime, requests, 120 if args.quick else args.timeout
        )
    payload = {
        "benchmark": "service_memory",
        "quick": args.quick,
        "models": models,
        "passages": count,
        "bytes": sizes,
        "service": service,
        "machine": machine(),
    }
    print(report_markdown(payload))
    write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
