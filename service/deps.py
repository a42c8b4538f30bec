"""FastAPI dependencies and helpers shared by the routers."""

from __future__ import annotations

import asyncio
from typing import TypeVar

from fastapi import Request

from service.batching import BatcherClosedError, Done, MicroBatcher, QueueFullError
from service.errors import ApiError
from service.runtime import Runtime
from service.settings import ServiceSettings
from service.state import ServiceState

T = TypeVar("T")
R = TypeVar("R")

RETRY_AFTER_FULL_S = 1
RETRY_AFTER_LOADING_S = 5


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.loupe
    return state


def get_settings(request: Request) -> ServiceSettings:
    return get_state(request).settings


def get_runtime(request: Request) -> Runtime:
    """The loaded runtime, or 503 while loading (or after loading failed)."""
    state = get_state(request)
    if state.runtime is None:
        if state.status == "failed":
            raise ApiError(503, f"the service failed to load: {state.error}")
        raise ApiError(
            503,
            "the service is loading its models and index",
            headers={"Retry-After": str(RETRY_AFTER_LOADING_S)},
        )
    return state.runtime


async def submit(batcher: MicroBatcher[T, R], item: T, cost: int, timeout: float) -> Done[R]:
    """Queue model work; 429 when the queue is full, 504 on timeout, 503 when stopping."""
    try:
        return await asyncio.wait_for(batcher.submit(item, cost), timeout)
    except QueueFullError as exc:
        raise ApiError(
            429, f"{exc}; retry shortly", headers={"Retry-After": str(RETRY_AFTER_FULL_S)}
        ) from None
    except TimeoutError:
        raise ApiError(504, f"the model did not answer within {timeout:g}s") from None
    except BatcherClosedError as exc:
        raise ApiError(503, f"the service is shutting down ({exc})") from None
