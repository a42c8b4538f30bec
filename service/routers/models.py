"""``GET /v1/models``: the encoder and re-ranker this service runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends

from service.deps import get_runtime
from service.routers.responses import errors
from service.runtime import Runtime
from service.schemas import ModelCard, ModelsResponse, RuntimeInfo

if TYPE_CHECKING:
    from models.encoder import TextEncoder

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
    from models.registry import reranker_encoders  # torch is loaded by now

    engine = runtime.engine
    generator = [ModelCard(id=engine.generator.name, role="generator")] if engine.generator else []
    rerank_encoders = reranker_encoders(engine.reranker)
    return ModelsResponse(
        data=[
            ModelCard(
                id=engine.reranker_name,
                role="reranker",
                calibrated=engine.calibrated,
                max_tokens=engine.rerank_max_length,
                runtime=_runtime_info(rerank_encoders[0]) if rerank_encoders else None,
            ),
            ModelCard(
                id=engine.encoder_name,
                role="encoder",
                dimension=engine.dimension,
                max_tokens=engine.max_length,
                runtime=_runtime_info(engine.encoder),
            ),
            *generator,
        ]
    )


def _runtime_info(encoder: TextEncoder) -> RuntimeInfo | None:
    choice = getattr(encoder, "runtime_choice", None)
    if choice is None:
        return None
    return RuntimeInfo(
        runtime=choice.runtime,
        requested=choice.requested,
        provider=choice.provider,
        reason=choice.reason,
        calibration_ms=choice.calibration_ms,
    )
