"""Helpers shared by the service tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.engine import Engine
from service.settings import ServiceSettings


def assert_error(response: Any, status: int, error_type: str | None = None) -> dict[str, Any]:
    """Check an error answer: its status and the ``{"error": {"type", "message"}}`` body."""
    assert response.status_code == status, response.text
    body = response.json()
    assert "error" in body, body
    assert set(body["error"]) == {"type", "message"}, body
    assert body["error"]["message"]
    if error_type is not None:
        assert body["error"]["type"] == error_type, body
    return dict(body["error"])


def service_state(client: TestClient) -> Any:
    """The running service's state (``app.state.loupe``) behind a test client."""
    return cast(FastAPI, client.app).state.loupe


def wait_ready(client: TestClient, timeout: float = 30.0) -> None:
    """Poll ``/ready`` until 200; fail fast if loading failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get("/ready")
        if response.status_code == 200:
            return
        if response.json().get("status") == "failed":
            raise RuntimeError(f"service failed to load: {response.json()}")
        time.sleep(0.02)
    raise TimeoutError("service not ready")


def wait_url_ready(url: str, timeout: float = 30.0) -> None:
    """Poll a live server's ``/ready`` until 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/ready").status_code == 200:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready")


def engine_loader_for(encoder: Any, reranker: Any) -> Callable[[ServiceSettings], Engine]:
    """An engine loader that reuses already-loaded models and opens the settings' index
    (and loads the settings' generator, as the service does)."""

    def load(settings: ServiceSettings) -> Engine:
        from service.loading import load_generator, load_query_cache, open_index

        return Engine(
            encoder,
            reranker,
            open_index(settings, encoder.model_name, encoder.dim),
            snapshot_every=settings.snapshot_every,
            generator=load_generator(settings),
            query_cache=load_query_cache(settings),
        )

    return load
