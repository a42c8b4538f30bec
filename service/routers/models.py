"""``GET /v1/models``: the encoder and re-ranker this service runs."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from service.deps import get_runtime
from service.routers.responses import errors
from service.runtime import Runtime
from service.schemas import ModelCard, ModelsResponse

router = APIRouter(tags=["models"])


@router.get(
    "/v1/models",
    response_model=ModelsResponse,
    response_model_exclude_none=True,
    responses=errors(401, 503),
)
async def list_models(runtime: Runtime = Depends(get_runtime)) -> ModelsResponse:
    """The re-ranker (rerank, search), the first-stage encoder (embed) and the query
    generator (generate) when one is loaded."""
    engine = runtime.engine
    generator = [ModelCard(id=engine.generator.name, role="generator")] if engine.generator else []
    return ModelsResponse(
        data=[
            ModelCard(id=engine.reranker_name, role="reranker"),
            ModelCard(
                id=engine.encoder_name,
                role="encoder",
                dimension=engine.dimension,
                max_tokens=engine.max_length,
            ),
            *generator,
        ]
    )
