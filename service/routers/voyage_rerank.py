"""Voyage AI's re-rank request and answer at ``POST /v1/rerank`` (the route takes it beside
Cohere's and Jina's, told apart by its ``top_k`` and ``truncation``), so that Voyage's SDK
and the libraries built on it re-rank with Loupe unchanged."""

from __future__ import annotations

from index.rerank import order_by_score
from service.routers.rerank_texts import rerank_texts
from service.runtime import Runtime
from service.schemas import Usage, VoyageRerankRequest, VoyageRerankResponse, VoyageRerankResult


async def rerank_voyage(body: VoyageRerankRequest, runtime: Runtime) -> VoyageRerankResponse:
    """Every document scored against the query, best first, the top ``top_k``:
    ``relevance_score`` as Loupe's other re-rank answers give it (a probability where the
    re-ranker is calibrated). With ``truncation`` (Voyage's default) documents are cut to
    what the re-ranker reads; without, one longer than that is refused (413), as Voyage
    refuses one over its context. The query is read to the re-ranker's query length
    either way."""
    outcome = await rerank_texts(
        runtime,
        body.query,
        body.documents,
        cut=body.truncation,
        what="documents",
        cut_hint="; pass truncation: true to cut them",
    )
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
        data=data,
        model=runtime.engine.reranker_name,
        usage=Usage(total_tokens=outcome.total_tokens),
    )
