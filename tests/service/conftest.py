"""Fixtures for the service tests: a tiny random BERT, apps built on it, a live server.

The tiny model (2 layers, hidden size 32, MiniLM's vocabulary) ranks at random but
deterministically, which is all the API tests need; it loads and runs in milliseconds.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import ServiceSettings
from tests.conftest import build_tiny_bert
from tests.service.helpers import engine_loader_for, wait_ready


@pytest.fixture(scope="session")
def service_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared tiny BERT, with a 128-token limit (its position table's size)."""
    folder = build_tiny_bert(tmp_path_factory.mktemp("service-tiny-bert"))
    (folder / "sentence_bert_config.json").write_text('{"max_seq_length": 128}')
    return folder


@pytest.fixture(scope="session")
def tiny_models(service_model_dir: Path) -> tuple[Any, Any]:
    """``(encoder, reranker)`` on the tiny model, loaded once per session."""
    from models.encoder import EncoderConfig, TextEncoder
    from models.registry import load_reranker

    encoder = TextEncoder(EncoderConfig(model=str(service_model_dir), device="cpu"))
    reranker = load_reranker(str(service_model_dir), device="cpu")
    return encoder, reranker


@pytest.fixture
def make_settings(tmp_path: Path, service_model_dir: Path) -> Callable[..., ServiceSettings]:
    def make(**overrides: Any) -> ServiceSettings:
        values: dict[str, Any] = {
            "index": tmp_path / "index",
            "encoder": str(service_model_dir),
            "reranker": str(service_model_dir),
            "device": "cpu",
            "max_wait_ms": 2.0,
        }
        values.update(overrides)
        return ServiceSettings(**values)

    return make


@pytest.fixture
def make_app(
    make_settings: Callable[..., ServiceSettings], tiny_models: tuple[Any, Any]
) -> Callable[..., FastAPI]:
    """Factory: an app on the tiny model (settings given, or built from overrides)."""

    def make(
        settings: ServiceSettings | None = None, *, reranker: Any | None = None, **overrides: Any
    ) -> FastAPI:
        encoder, default_reranker = tiny_models
        return create_app(
            settings or make_settings(**overrides),
            engine_loader=engine_loader_for(encoder, reranker or default_reranker),
        )

    return make


@pytest.fixture
def make_client(make_app: Callable[..., FastAPI]) -> Iterator[Callable[..., TestClient]]:
    """Factory: a started TestClient (lifespan run, engine loaded) for given settings."""
    stack = contextlib.ExitStack()

    def make(
        settings: ServiceSettings | None = None,
        *,
        reranker: Any | None = None,
        ready: bool = True,
        **overrides: Any,
    ) -> TestClient:
        app = make_app(settings, reranker=reranker, **overrides)
        client = stack.enter_context(TestClient(app, raise_server_exceptions=False))
        if ready:
            wait_ready(client)
        return client

    with stack:
        yield make


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    """A ready TestClient with default limits and an empty index."""
    return make_client()


class LiveServer:
    """A uvicorn server on a free loopback port, in a thread of the test process."""

    def __init__(self, app: FastAPI):
        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = int(self.socket.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.socket.close()


@pytest.fixture
def live_server(make_app: Callable[..., FastAPI]) -> Iterator[Callable[..., LiveServer]]:
    """Factory: start a real uvicorn server for given settings; stopped after the test."""
    stack = contextlib.ExitStack()

    def start(**overrides: Any) -> LiveServer:
        return stack.enter_context(LiveServer(make_app(**overrides)))

    with stack:
        yield start
