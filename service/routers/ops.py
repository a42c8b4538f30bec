"""Operations: ``GET /health`` (alive), ``GET /ready`` (loaded), ``GET /metrics``."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from service.deps import get_state
from service.errors import error_body
from service.schemas import HealthResponse, ReadyResponse
from service.state import ServiceState

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
async def health(state: ServiceState = Depends(get_state)) -> JSONResponse:
    """200 while the process is alive and loading or serving; 503 if loading failed."""
    if state.status == "failed":
        body = {"status": "failed", **error_body("load_failed", state.error or "")}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": state.status})


@router.get("/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
async def ready(state: ServiceState = Depends(get_state)) -> JSONResponse:
    """200 once the models and the index are loaded; 503 before (or if loading failed)."""
    runtime = state.runtime
    if runtime is None:
        message = state.error or "loading models and index"
        error_type = "load_failed" if state.status == "failed" else "not_ready"
        body = {"ready": False, "status": state.status, **error_body(error_type, message)}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})
    count = await asyncio.to_thread(runtime.engine.document_count)
    answer = ReadyResponse(
        ready=True,
        status="ok",
        documents=count,
        read_only=runtime.engine.read_only,
        index_generation=runtime.engine.index_generation,
    )
    return JSONResponse(answer.model_dump(exclude_none=True))


@router.get("/metrics", response_class=Response, include_in_schema=True)
async def metrics(state: ServiceState = Depends(get_state)) -> Response:
    """Prometheus text format: requests and latencies per route, batch sizes, queue depth."""
    if state.runtime is not None:
        engine = state.runtime.engine
        state.metrics.documents.set(await asyncio.to_thread(engine.document_count))
    return Response(state.metrics.render(), media_type=state.metrics.content_type)
