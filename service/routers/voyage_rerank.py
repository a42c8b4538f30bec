"""Voyage AI's re-rank request and answer at ``POST /v1/rerank`` (the route takes it beside
Cohere's and Jina's, told apart by its ``top_k`` and ``truncation``), so that Voyage's SDK
and the libraries built on it re-rank with Loupe unchanged."""

from __future__ import annotations

from index.rerank import order_by_score
from service.deps import submit
from service.engine import RerankJob
from service.limits import check_count, check_lengths
from service.runtime import Runtime
from service.schemas import Usage, VoyageRerankRequest, VoyageRerankResponse, VoyageRerankResult


async def rerank_voyage(body: VoyageRerankRequest, runtime: Runtime) -> VoyageRerankResponse:
    """Every document scored against the query, best first, the top ``top_k``:
    ``relevance_score`` as Loupe's other re-rank answers give it (a probability where the
    re-ranker is calibrated). With ``truncation`` (Voyage's default) documents are cut to
    what the re-ranker reads; without, one over ``max_text_chars`` is refused (413)."""
    settings, engine = runtime.settings, runtime.engine
    check_count(len(body.documents), settings)
    check_lengths([body.query], settings, "query")
    if not body.truncation:
        check_lengths(
            body.documents, settings, "documents", hint="; pass truncation: true to cut them"
        )
    job = RerankJob(
        body.query, body.documents, engine.rerank_max_length if body.truncation else None
    )
    done = await submit(
        runtime.rerank,
        job,
        engine.estimate_tokens([body.query, *body.documents], cap=engine.rerank_max_length),
        settings.request_timeout_s,
    )
    outcome = done.value
    relevance = outcome.relevance if outcome.relevance is not None else outcome.scores
    data = [
        VoyageRerankResult(
            index=i,
            relevance_score=float(relevance[i]),
            document=body.documents[i] if body.return_documents else None,
        )
        for i in order_by_score(outcome.scores)[: body.top_k]
    ]
    return VoyageRerankResponse(
        data=data, model=engine.reranker_name, usage=Usage(total_tokens=outcome.total_tokens)
    )
