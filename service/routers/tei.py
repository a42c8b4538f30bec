"""``POST /rerank``: Hugging Face text-embeddings-inference (TEI) compatible re-ranking, for
clients written against TEI (LlamaIndex's and LangChain's TEI re-rankers, raw HTTP)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from index.rerank import order_by_score
from service.deps import get_runtime, submit
from service.engine import RerankJob
from service.limits import check_count, check_lengths
from service.routers.responses import MODEL_ERRORS
from service.runtime import Runtime
from service.schemas import TeiRank, TeiRerankRequest

router = APIRouter(tags=["rerank"])


@router.post(
    "/rerank",
    response_model=list[TeiRank],
    response_model_exclude_none=True,
    responses=MODEL_ERRORS,
    summary="Re-rank texts for a query (TEI's request and answer)",
)
async def rerank_tei(
    body: TeiRerankRequest, runtime: Runtime = Depends(get_runtime)
) -> list[TeiRank]:
    """Scores every text against the query and returns ``[{index, score, text?}]``, best
    first, as TEI does.

    ``score`` is the probability of relevance where the re-ranker gives one (a calibrated
    re-ranker, such as the default, or a cross-encoder's sigmoid), else its raw score;
    ``raw_scores: true`` asks for the raw score. Loupe reads long texts whole, as windows,
    up to what the re-ranker reads; ``truncate: true`` cuts texts to that (from the end, or
    with ``truncation_direction: left`` from the start) instead of refusing texts longer than
    ``max_text_chars`` with 413.
    """
    settings = runtime.settings
    check_count(len(body.texts), settings)
    check_lengths([body.query], settings, "query")
    if not body.truncate:
        check_lengths(body.texts, settings, "texts", hint="; pass truncate: true to cut them")
    engine = runtime.engine
    job = RerankJob(
        body.query,
        body.texts,
        engine.rerank_max_length if body.truncate else None,
        keep_end=body.truncation_direction.lower() == "left",
    )
    done = await submit(
        runtime.rerank,
        job,
        engine.estimate_tokens([body.query, *body.texts], cap=engine.rerank_max_length),
        settings.request_timeout_s,
    )
    outcome = done.value
    scores = outcome.scores if body.raw_scores or outcome.relevance is None else outcome.relevance
    return [
        TeiRank(
            index=i,
            score=float(scores[i]),
            text=body.texts[i] if body.return_text else None,
        )
        for i in order_by_score(outcome.scores)
    ]
