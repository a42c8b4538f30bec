"""``POST /v1/search``: dual-encoder first stage over the index, then re-ranking."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Depends

from service.deps import get_runtime, submit
from service.engine import SearchJob
from service.errors import ApiError
from service.limits import check_lengths
from service.routers.responses import MODEL_ERRORS
from service.runtime import Runtime
from service.schemas import (
    SearchHit,
    SearchRequest,
    SearchResponse,
    SearchTimings,
    metadata_filter,
)

router = APIRouter(tags=["search"])


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


@router.post(
    "/v1/search",
    response_model=SearchResponse,
    response_model_exclude_none=True,
    responses=MODEL_ERRORS,
    summary="Search the index and re-rank the candidates",
)
async def search(body: SearchRequest, runtime: Runtime = Depends(get_runtime)) -> SearchResponse:
    """Top ``top_n`` of ``candidates`` first-stage hits, re-scored when ``rerank`` (after
    the first ``offset``: the next page; a page past the candidates is empty); with
    ``filter``, drawn only from documents whose metadata matches it; with
    ``min_relevance_score``, only those a calibrated re-ranker finds at least that likely
    to be relevant."""
    started = time.perf_counter()
    settings = runtime.settings
    check_lengths([body.query], settings, "query")
    pages = (("top_n", body.top_n), ("offset + top_n", body.offset + body.top_n))
    for name, value in (*pages, ("candidates", body.candidates)):
        if value > settings.max_top_n:
            raise ApiError(
                413, f"{name}={value}; the limit is {settings.max_top_n}", error_type="too_many"
            )
    engine = runtime.engine
    threshold = body.min_relevance_score
    if threshold is not None and not (body.rerank and engine.calibrated):
        raise ApiError(
            422,
            "min_relevance_score: needs re-ranking by a calibrated re-ranker "
            f"({engine.reranker_name} is {'' if engine.calibrated else 'not '}calibrated; "
            f"rerank={str(body.rerank).lower()})",
        )
    if body.first_stage != "dense" and not engine.has_lexical:
        raise ApiError(
            422,
            f"first_stage={body.first_stage}: this index has no full-text index (its SQLite "
            "lacks FTS5); use first_stage=dense",
        )
    job = SearchJob(
        body.query,
        body.offset + body.top_n,
        body.candidates,
        body.rerank,
        metadata_filter(body.filter),
        body.first_stage,
    )
    done = await submit(
        runtime.search, job, engine.estimate_search_tokens(job), settings.request_timeout_s
    )
    outcome = done.value
    hits = [
        hit
        for hit in outcome.hits
        if threshold is None or (hit.relevance is not None and hit.relevance >= threshold)
    ][body.offset :]
    results = [
        SearchHit(
            id=hit.document.id,
            score=hit.score,
            relevance_score=hit.relevance,
            first_stage_score=hit.first_stage_score,
            text=hit.document.text if body.return_documents else None,
            title=(hit.document.title or None) if body.return_documents else None,
            metadata=hit.document.metadata if body.return_documents else None,
        )
        for hit in hits
    ]
    timings = SearchTimings(
        queue_ms=_ms(done.queue_seconds),
        encode_ms=_ms(outcome.encode_seconds),
        first_stage_ms=_ms(outcome.first_stage_seconds),
        rerank_ms=_ms(outcome.rerank_seconds),
        total_ms=_ms(time.perf_counter() - started),
    )
    model = engine.reranker_name if body.rerank else engine.encoder_name
    return SearchResponse(id=str(uuid.uuid4()), model=model, results=results, timings=timings)
