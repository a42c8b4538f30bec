"""The Python clients: the sync and async ones offer the same calls, and between them they
reach every route of the API that is not another API's alias."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from service.client import AsyncLoupeClient, LoupeClient, LoupeError

ALIASES = {
    "/rerank": "TEI",
    "/embed": "TEI",
    "/v2/rerank": "Cohere v2 (the client uses /v1/rerank)",
    "/v1/embeddings": "OpenAI (the client uses /v1/embed)",
    "/v2/embed": "Cohere v2 (the client uses /v1/embed)",
    "/metrics": "Prometheus",
}
"""Routes another API's clients call, not Loupe's."""

SAMPLE_ARGUMENTS: dict[str, tuple[Any, ...]] = {
    "rerank": ("query", ["a", "b"]),
    "search": ("query",),
    "add_documents": ([{"id": "d", "text": "t"}],),
    "get_document": ("doc-1",),
    "delete_document": ("doc-1",),
    "delete_documents": (["doc-1"],),
    "embed": (["t"],),
    "generate": ("a passage",),
}
"""Arguments for the calls that need some."""

ASYNC_NAMES = {"close": "aclose", "__enter__": "__aenter__", "__exit__": "__aexit__"}


def public_calls(client: type) -> dict[str, Callable[..., Any]]:
    return {
        name: member
        for name, member in vars(client).items()
        if callable(member) and not name.startswith("_")
    }


def test_the_async_client_mirrors_the_sync_one() -> None:
    sync_calls = public_calls(LoupeClient)
    async_calls = public_calls(AsyncLoupeClient)
    assert {ASYNC_NAMES.get(n, n) for n in sync_calls} == set(async_calls)
    for name, call in sync_calls.items():
        counterpart = async_calls[ASYNC_NAMES.get(name, name)]
        sync_parameters = list(inspect.signature(call).parameters.values())
        async_parameters = list(inspect.signature(counterpart).parameters.values())
        assert [(p.name, p.kind, p.default) for p in sync_parameters] == [
            (p.name, p.kind, p.default) for p in async_parameters
        ], name
        assert inspect.iscoroutinefunction(counterpart) or inspect.isasyncgenfunction(
            counterpart
        ), name


def refusing(seen: set[tuple[str, str]]) -> httpx.MockTransport:
    """A transport that records each request's method and route, then answers 500."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.add((request.method, request.url.path))
        return httpx.Response(500, json={"error": {"type": "internal", "message": "recorded"}})

    return httpx.MockTransport(handle)


def sync_requests() -> set[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    with LoupeClient("http://loupe", transport=refusing(seen)) as client:
        for name, call in public_calls(LoupeClient).items():
            if name == "close":
                continue
            try:
                result = call(client, *SAMPLE_ARGUMENTS.get(name, ()))
                if inspect.isgenerator(result):
                    next(result)
            except LoupeError:
                pass
    return seen


def async_requests() -> set[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()

    async def run() -> None:
        async with AsyncLoupeClient("http://loupe", transport=refusing(seen)) as client:
            for name, call in public_calls(AsyncLoupeClient).items():
                if name == "aclose":
                    continue
                try:
                    result = call(client, *SAMPLE_ARGUMENTS.get(name, ()))
                    if inspect.isasyncgen(result):
                        await anext(result)
                    else:
                        await result
                except LoupeError:
                    pass

    asyncio.run(run())
    return seen


def route_of(path: str) -> str:
    """A request path as the route it reaches: ``/v1/documents/d`` -> ``/v1/documents/{}``."""
    return "/v1/documents/{}" if path.startswith("/v1/documents/doc-1") else path


def api_routes(app: FastAPI) -> set[tuple[str, str]]:
    """The (method, route) pairs of the app's OpenAPI schema, aliases left out."""
    routes = set()
    for path, operations in app.openapi()["paths"].items():
        if path in ALIASES:
            continue
        route = "/v1/documents/{}" if path.startswith("/v1/documents/{") else path
        routes |= {(method.upper(), route) for method in operations}
    return routes


@pytest.mark.parametrize("requests", [sync_requests, async_requests], ids=["sync", "async"])
def test_the_clients_reach_every_route(
    make_app: Callable[..., FastAPI], requests: Callable[[], set[tuple[str, str]]]
) -> None:
    reached = {(method, route_of(path)) for method, path in requests()}
    assert reached == api_routes(make_app())
