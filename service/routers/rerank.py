"""``POST /v1/rerank`` and ``POST /v2/rerank``: Cohere v2 / Jina v1 compatible re-ranking;
``/v1/rerank`` also takes Voyage AI's request (see service/routers/voyage_rerank.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from pydantic import Discriminator, Tag

from index.rerank import order_by_score
from service.deps import get_runtime, submit
from service.engine import Engine, RerankJob
from service.errors import ApiError
from service.limits import check_count, check_lengths
from service.routers.responses import MODEL_ERRORS
from service.routers.voyage_rerank import rerank_voyage
from service.runtime import Runtime
from service.schemas import (
    BilledUnits,
    RerankDocumentIn,
    RerankDocumentOut,
    RerankMeta,
    RerankRequest,
    RerankResponse,
    RerankResult,
    TokenCounts,
    Usage,
    VoyageRerankRequest,
    VoyageRerankResponse,
)

router = APIRouter(tags=["rerank"])


def document_text(
    document: str | RerankDocumentIn, index: int, rank_fields: list[str] | None
) -> str:
    """The text scored for one document: itself, its ``text``, or its ``rank_fields``."""
    if isinstance(document, str):
        return document
    if rank_fields:
        fields = document.model_dump(exclude_none=True)
        parts = [f"{name}: {fields[name]}" for name in rank_fields if name in fields]
        if not parts:
            raise ApiError(422, f"documents.{index}: has none of the rank_fields {rank_fields}")
        return "\n".join(parts)
    if document.text is None:
        raise ApiError(
            422, f"documents.{index}: an object document needs a 'text' field (or an 'id')"
        )
    return document.text


def request_shape(body: Any) -> str:
    """``voyage`` for Voyage AI's body (``top_k`` or ``truncation``), else ``cohere``
    (Cohere's and Jina's).

    >>> request_shape({"query": "q", "truncation": True}), request_shape({"top_n": 3})
    ('voyage', 'cohere')
    """
    if isinstance(body, VoyageRerankRequest):
        return "voyage"
    voyage = isinstance(body, dict) and ("top_k" in body or "truncation" in body)
    return "voyage" if voyage else "cohere"


AnyRerankRequest = Annotated[
    Annotated[RerankRequest, Tag("cohere")] | Annotated[VoyageRerankRequest, Tag("voyage")],
    Discriminator(request_shape),
]


@router.post(
    "/v1/rerank",
    response_model=RerankResponse | VoyageRerankResponse,
    response_model_exclude_none=True,
    responses=MODEL_ERRORS,
    summary="Re-rank documents for a query (Cohere's, Jina's or Voyage AI's request)",
)
async def rerank_any(
    body: Annotated[AnyRerankRequest, Body()], runtime: Runtime = Depends(get_runtime)
) -> RerankResponse | VoyageRerankResponse:
    """Scores every document against the query and returns them best first, answered in the
    request's own shape: Cohere's and Jina's (``results``), or Voyage AI's (``data``)."""
    if isinstance(body, VoyageRerankRequest):
        return await rerank_voyage(body, runtime)
    return await rerank(body, runtime)


@router.post(
    "/v2/rerank",
    response_model=RerankResponse,
    response_model_exclude_none=True,
    responses=MODEL_ERRORS,
    summary="Re-rank documents for a query (the path Cohere's v2 SDK calls)",
)
async def rerank(body: RerankRequest, runtime: Runtime = Depends(get_runtime)) -> RerankResponse:
    """Scores every document against the query and returns them best first.

    ``relevance_score`` is the re-ranker's probability of relevance in [0, 1] where it ships
    a calibration (the default does) or is a cross-encoder (its own sigmoid), as Cohere's
    and Jina's are; otherwise its raw score.

    Documents longer than ``max_text_chars`` are refused with 413 unless
    ``max_tokens_per_doc`` is given, in which case every document is cut to that many tokens.
    """
    started = time.perf_counter()
    settings = runtime.settings
    check_count(len(body.documents), settings)
    indexed = await indexed_texts(body, runtime.engine)
    texts = [
        indexed[i] if i in indexed else document_text(d, i, body.rank_fields)
        for i, d in enumerate(body.documents)
    ]
    check_lengths([body.query], settings, "query")
    if body.max_tokens_per_doc is None:
        check_lengths(texts, settings, "documents", hint="; pass max_tokens_per_doc to truncate")
    engine = runtime.engine
    job = RerankJob(body.query, texts, document_token_limit(body, engine))
    done = await submit(
        runtime.rerank,
        job,
        engine.estimate_tokens([body.query, *texts], cap=engine.rerank_max_length),
        settings.request_timeout_s,
    )
    outcome = done.value
    order = order_by_score(outcome.scores)[: body.top_n]
    relevance = outcome.relevance if outcome.relevance is not None else outcome.scores
    results = [
        RerankResult(
            index=i,
            relevance_score=float(relevance[i]),
            document=RerankDocumentOut(text=texts[i]) if body.return_documents else None,
        )
        for i in order
    ]
    warnings = (
        [f"{outcome.truncated} documents were cut to {job.max_tokens_per_doc} tokens"]
        if outcome.truncated
        else None
    )
    meta = RerankMeta(
        billed_units=BilledUnits(search_units=1, input_tokens=outcome.total_tokens),
        tokens=TokenCounts(input_tokens=outcome.total_tokens),
        timings={
            "queue_ms": round(done.queue_seconds * 1000, 3),
            "total_ms": round((time.perf_counter() - started) * 1000, 3),
        },
        warnings=warnings,
    )
    return RerankResponse(
        id=str(uuid.uuid4()),
        model=engine.reranker_name,
        results=results,
        meta=meta,
        usage=Usage(total_tokens=outcome.total_tokens),
    )


async def indexed_texts(body: RerankRequest, engine: Engine) -> dict[int, str]:
    """By position: the full texts of documents given as ``{"id": ...}`` alone (no text, no
    rank_fields), read from the index; 422 naming one it does not hold."""
    if body.rank_fields:
        return {}
    wanted = {
        i: str(d.id)
        for i, d in enumerate(body.documents)
        if isinstance(d, RerankDocumentIn) and d.text is None and d.id is not None
    }
    if not wanted:
        return {}
    found = await asyncio.to_thread(engine.documents_by_id, sorted(set(wanted.values())))
    for i, doc_id in wanted.items():
        if doc_id not in found:
            raise ApiError(
                422, f"documents.{i}: no 'text', and the index holds no document {doc_id!r}"
            )
    return {i: found[doc_id].full_text for i, doc_id in wanted.items()}


def document_token_limit(body: RerankRequest, engine: Engine) -> int | None:
    """Tokens each document is cut to: ``max_tokens_per_doc``, and (Cohere v1's
    ``max_chunks_per_doc``) what that many of the re-ranker's windows cover, whichever is
    fewer; None to read what the re-ranker reads."""
    limits = [body.max_tokens_per_doc]
    if body.max_chunks_per_doc is not None:
        limits.append(engine.window_token_limit(body.max_chunks_per_doc))
    given = [limit for limit in limits if limit is not None]
    return min(given) if given else None
