"""``POST /v1/generate``: queries for a passage from the GMLM parallel decoder."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Depends

from models.gmlm_decoding import DecodingConfig, length_candidates_for
from service.deps import get_runtime, submit
from service.errors import ApiError
from service.generation import GenerateJob
from service.limits import check_lengths
from service.routers.responses import MODEL_ERRORS
from service.runtime import Runtime
from service.schemas import (
    GeneratedText,
    GenerateMeta,
    GenerateRequest,
    GenerateResponse,
    Usage,
)

router = APIRouter(tags=["generate"])


@router.post(
    "/v1/generate",
    response_model=GenerateResponse,
    responses=MODEL_ERRORS,
    summary="Generate queries for a passage (GMLM parallel decoding)",
)
async def generate(
    body: GenerateRequest, runtime: Runtime = Depends(get_runtime)
) -> GenerateResponse:
    """Distinct queries for ``text``, best (highest mean log-probability) first.

    503 when the service runs without a generator (``LOUPE_GENERATOR`` names a GMLM folder,
    trained with ``loupe train gmlm``).
    """
    started = time.perf_counter()
    generator = runtime.engine.generator
    if generator is None:
        raise ApiError(
            503,
            "no query generator is loaded: start the service with --generator "
            "(LOUPE_GENERATOR) naming a GMLM folder from `loupe train gmlm`",
        )
    if body.model is not None and body.model != generator.name:
        raise ApiError(422, f"model: this service generates with {generator.name!r}")
    check_lengths([body.text], runtime.settings, "text")
    if body.max_length is not None and body.max_length > generator.max_target_length:
        raise ApiError(
            422, f"max_length: the generator writes at most {generator.max_target_length} tokens"
        )
    length_candidates = body.length_candidates or length_candidates_for(
        body.num_generations, body.temperature
    )
    config = DecodingConfig(
        iterations=body.iterations,
        length_candidates=length_candidates,
        num_generations=body.num_generations,
        temperature=body.temperature,
        max_length=body.max_length,
        seed=body.seed,
    )
    done = await submit(
        runtime.generate,
        GenerateJob(body.text, config),
        runtime.engine.estimate_tokens([body.text]),
        runtime.settings.request_timeout_s,
    )
    outcome = done.value
    return GenerateResponse(
        id=str(uuid.uuid4()),
        model=generator.name,
        generations=[GeneratedText(text=g.text, score=g.score) for g in outcome.generations],
        meta=GenerateMeta(
            iterations_run=outcome.iterations_run,
            timings={
                "queue_ms": round(done.queue_seconds * 1000, 3),
                "total_ms": round((time.perf_counter() - started) * 1000, 3),
            },
        ),
        usage=Usage(total_tokens=outcome.source_tokens),
    )
