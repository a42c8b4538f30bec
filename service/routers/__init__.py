"""One APIRouter per resource."""

from __future__ import annotations

from service.routers import (
    cohere_embed,
    documents,
    embed,
    generate,
    models,
    ops,
    rerank,
    search,
    tei,
)

ALL = (
    ops.router,
    models.router,
    rerank.router,
    tei.router,
    search.router,
    documents.router,
    embed.router,
    cohere_embed.router,
    generate.router,
)

__all__ = ["ALL"]
