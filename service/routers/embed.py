"""``POST /v1/embed`` (and ``/v1/embeddings``, the path OpenAI's and Jina's SDKs call):
first-stage vectors, for clients that bring their own index."""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter, Depends

from service.deps import get_runtime, submit
from service.errors import ApiError
from service.limits import check_count, check_lengths
from service.routers.responses import MODEL_ERRORS
from service.runtime import Runtime
from service.schemas import Embedding, EmbedRequest, EmbedResponse, Usage

router = APIRouter(tags=["embed"])


def encode_base64(vector: np.ndarray) -> str:
    """Little-endian float32 bytes, base64 (OpenAI's ``encoding_format="base64"``).

    >>> encode_base64(np.array([1.0], dtype=np.float32))
    'AACAPw=='
    """
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


@router.post(
    "/v1/embeddings",
    response_model=EmbedResponse,
    responses=MODEL_ERRORS,
    summary="Embed texts (OpenAI's and Jina's path; the same as /v1/embed)",
)
@router.post(
    "/v1/embed",
    response_model=EmbedResponse,
    responses=MODEL_ERRORS,
    summary="Embed texts with the first-stage encoder (OpenAI / Jina shaped)",
)
async def embed(body: EmbedRequest, runtime: Runtime = Depends(get_runtime)) -> EmbedResponse:
    """One unit-length vector per input, in input order."""
    settings = runtime.settings
    engine = runtime.engine
    texts = body.texts()
    if not texts:
        raise ApiError(422, "input: must hold at least one text")
    if body.dimensions is not None and body.dimensions != engine.dimension:
        raise ApiError(
            422, f"dimensions: the encoder gives {engine.dimension}, not {body.dimensions}"
        )
    if body.normalized is False:
        raise ApiError(422, "normalized: Loupe returns unit-length vectors only")
    check_count(len(texts), settings, "inputs")
    check_lengths(texts, settings, "input")
    done = await submit(
        runtime.embed, texts, engine.estimate_tokens(texts), settings.request_timeout_s
    )
    outcome = done.value
    data = [
        Embedding(
            index=i,
            embedding=encode_base64(v) if body.encoding_format == "base64" else v.tolist(),
        )
        for i, v in enumerate(outcome.vectors)
    ]
    usage = Usage(total_tokens=outcome.total_tokens, prompt_tokens=outcome.total_tokens)
    return EmbedResponse(model=engine.encoder_name, data=data, usage=usage)
