"""``POST /v2/embed`` (and ``/v1/embed`` with Cohere's v1 body): Cohere's embed request and
answer, so that Cohere's SDKs and the libraries built on them embed with Loupe unchanged."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Depends

from service.deps import get_runtime, submit
from service.errors import ApiError
from service.limits import check_count, check_lengths
from service.routers.embed_encoding import encode_as
from service.routers.responses import MODEL_ERRORS
from service.runtime import Runtime
from service.schemas import (
    ApiVersion,
    BilledUnits,
    CohereEmbeddingsByType,
    CohereEmbedRequest,
    CohereEmbedResponse,
    RerankMeta,
    TokenCounts,
)

router = APIRouter(tags=["embed"])


@router.post(
    "/v2/embed",
    response_model=CohereEmbedResponse,
    response_model_exclude_none=True,
    responses=MODEL_ERRORS,
    summary="Embed texts (Cohere's v2 request and answer)",
)
async def embed_v2(
    body: CohereEmbedRequest, runtime: Runtime = Depends(get_runtime)
) -> CohereEmbedResponse:
    """One unit-length vector per text, in input order, by type (``float`` unless
    ``embedding_types`` asks for others too or instead: ``base64``, the bytes ``int8`` and
    ``uint8``, the bits ``binary`` and ``ubinary``)."""
    return await embed_cohere(body, runtime, api_version="2")


async def embed_cohere(
    body: CohereEmbedRequest, runtime: Runtime, *, api_version: str
) -> CohereEmbedResponse:
    """Embed a Cohere request; v1 without ``embedding_types`` answers plain float lists."""
    started = time.perf_counter()
    settings, engine = runtime.settings, runtime.engine
    texts = body.text_list()
    if not texts:
        raise ApiError(422, "texts: must hold at least one text")
    if body.output_dimension is not None and body.output_dimension != engine.dimension:
        raise ApiError(
            422,
            f"output_dimension: the encoder gives {engine.dimension}, not {body.output_dimension}",
        )
    check_count(len(texts), settings, "texts")
    check_lengths(texts, settings, "texts")
    texts = await _truncated(body, runtime, texts)
    done = await submit(
        runtime.embed, texts, engine.estimate_tokens(texts), settings.request_timeout_s
    )
    outcome = done.value
    tokens = outcome.total_tokens
    meta = RerankMeta(
        api_version=ApiVersion(version=api_version),
        billed_units=BilledUnits(input_tokens=tokens),
        tokens=TokenCounts(input_tokens=tokens),
        timings={
            "queue_ms": round(done.queue_seconds * 1000, 3),
            "total_ms": round((time.perf_counter() - started) * 1000, 3),
        },
    )
    response_id, original = str(uuid.uuid4()), body.text_list()
    if api_version == "1" and body.embedding_types is None:
        embeddings = [vector.tolist() for vector in outcome.vectors]
        return CohereEmbedResponse(
            id=response_id,
            response_type="embeddings_floats",
            embeddings=embeddings,
            texts=original,
            meta=meta,
        )
    kinds = set(body.embedding_types or ("float",))
    by_type = CohereEmbeddingsByType.model_validate(
        {kind: encode_as(outcome.vectors, kind) for kind in kinds}
    )
    return CohereEmbedResponse(
        id=response_id,
        response_type="embeddings_by_type",
        embeddings=by_type,
        texts=original,
        meta=meta,
    )


async def _truncated(body: CohereEmbedRequest, runtime: Runtime, texts: list[str]) -> list[str]:
    """The texts as the encoder is to read them: cut to ``max_tokens`` (and the encoder's
    limit) at their end, or at their start with ``truncate: START``; with ``NONE``, an
    over-long text is refused instead (413)."""
    engine = runtime.engine
    limit = min(body.max_tokens or engine.text_token_limit, engine.text_token_limit)
    if body.truncate == "NONE":
        _, cut = await runtime.run(engine.truncate, texts, limit)
        if cut:
            raise ApiError(
                413,
                f"{cut} of the texts are longer than {limit} tokens; pass truncate: START or "
                "END to cut them",
                error_type="text_too_long",
            )
        return texts
    keep_end = body.truncate == "START"
    if keep_end or limit < engine.text_token_limit:
        texts, _ = await runtime.run(engine.truncate, texts, limit, keep_end)
    return texts
