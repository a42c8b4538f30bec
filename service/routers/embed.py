"""``POST /v1/embed`` (and ``/v1/embeddings``, the path OpenAI's and Jina's SDKs call):
first-stage vectors, for clients that bring their own index. ``/v1/embed`` also takes
Cohere's v1 body (``texts``), which Cohere's v1 SDK sends to that path."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from pydantic import Discriminator, Tag

from service.deps import get_runtime, submit
from service.errors import ApiError
from service.limits import check_count, check_lengths
from service.routers.cohere_embed import embed_cohere
from service.routers.embed_encoding import encode_as
from service.routers.responses import MODEL_ERRORS
from service.runtime import Runtime
from service.schemas import (
    CohereEmbedRequest,
    CohereEmbedResponse,
    Embedding,
    EmbedRequest,
    EmbedResponse,
    Usage,
)

router = APIRouter(tags=["embed"])


def request_shape(body: Any) -> str:
    """``cohere`` for Cohere's body (``texts`` or ``inputs``, no ``input``), else
    ``openai`` (OpenAI's and Jina's).

    >>> request_shape({"texts": ["a"]}), request_shape({"input": "a"}), request_shape([])
    ('cohere', 'openai', 'openai')
    """
    if isinstance(body, CohereEmbedRequest):
        return "cohere"
    cohere = (
        isinstance(body, dict) and "input" not in body and ("texts" in body or "inputs" in body)
    )
    return "cohere" if cohere else "openai"


AnyEmbedRequest = Annotated[
    Annotated[EmbedRequest, Tag("openai")] | Annotated[CohereEmbedRequest, Tag("cohere")],
    Discriminator(request_shape),
]


@router.post(
    "/v1/embed",
    response_model=EmbedResponse | CohereEmbedResponse,
    response_model_exclude_none=True,
    responses=MODEL_ERRORS,
    summary="Embed texts with the first-stage encoder (OpenAI / Jina shaped, or Cohere's v1)",
)
async def embed_any(
    body: Annotated[AnyEmbedRequest, Body()], runtime: Runtime = Depends(get_runtime)
) -> EmbedResponse | CohereEmbedResponse:
    """One unit-length vector per input, in input order, answered in the request's own
    shape: OpenAI's and Jina's (``input``), or Cohere's v1 (``texts``)."""
    if isinstance(body, CohereEmbedRequest):
        return await embed_cohere(body, runtime, api_version="1")
    return await embed(body, runtime)


@router.post(
    "/v1/embeddings",
    response_model=EmbedResponse,
    responses=MODEL_ERRORS,
    summary="Embed texts (OpenAI's and Jina's path and shape)",
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
    embeddings = encode_as(outcome.vectors, body.embedding_type or body.encoding_format)
    data = [Embedding(index=i, embedding=e) for i, e in enumerate(embeddings)]
    usage = Usage(total_tokens=outcome.total_tokens, prompt_tokens=outcome.total_tokens)
    return EmbedResponse(model=engine.encoder_name, data=data, usage=usage)
