"""``loupe serve`` as a real process: starts, serves, and snapshots on SIGTERM (slow)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_loupe_serve_process_round_trip(service_model_dir: Path, tmp_path: Path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "c1", "text": "a loupe"}\n{"_id": "c2", "text": "a banana"}\n')
    command = [
        sys.executable, "-m", "loupe.cli", "serve",
        "--port", str(port),
        "--index", str(tmp_path / "index"),
        "--corpus", str(corpus),
        "--encoder", str(service_model_dir),
        "--reranker", str(service_model_dir),
        "--device", "cpu",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOUPE_")}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            assert time.monotonic() < deadline, "not ready in time"
            try:
                if httpx.get(f"{url}/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        assert httpx.get(f"{url}/ready").json()["documents"] == 2
        httpx.post(
            f"{url}/v1/documents", json={"documents": [{"id": "n1", "text": "new"}]}
        ).raise_for_status()
        hits = httpx.post(f"{url}/v1/search", json={"query": "loupe"}).json()["results"]
        assert {h["id"] for h in hits} == {"c1", "c2", "n1"}
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0].decode()
    # uvicorn re-raises the signal after a graceful shutdown
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["count"] == 3  # snapshot written on shutdown
