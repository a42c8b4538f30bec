"""``loupe search --index``: first-stage search of an index folder, optionally re-ranked
from its token store, printed as ``loupe search --url`` prints a service's answer."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from index.metadata_filter import MetadataFilter

if TYPE_CHECKING:
    from index.qdrant_index import QdrantTarget
    from index.searcher import Hit
    from index.vector_index import ApproximateSearch

log = logging.getLogger(__name__)


def search_local(
    index: Path,
    query: str,
    k: int,
    first_stage: str = "dense",
    where: MetadataFilter | None = None,
    reranker: str | None = None,
    depth: int = 100,
    device: str | None = None,
    qdrant: QdrantTarget | None = None,
    approximate: ApproximateSearch | None = None,
) -> list[str]:
    """The top ``k`` hits as lines ``rank  score  id  [P=...]  text``: the first stage's own,
    or, with ``reranker``, its top ``depth`` re-scored (from the token store where the
    re-ranker wrote it), with the probability of relevance where the re-ranker gives one.
    ``qdrant``: where an index's Qdrant collection is (default: as its manifest says);
    ``approximate``: how far an approximate index searches."""
    from index.rerank import order_by_score, rerank_hits_many, token_store_warning
    from index.searcher import Searcher
    from models.registry import load_reranker

    searcher = Searcher.open(index, device=device, qdrant=qdrant, approximate=approximate)
    try:
        hits = searcher.search([query], max(k, depth) if reranker else k, first_stage, where)[0]
        ranked: list[tuple[Hit, float, float | None]]
        if reranker is None:
            ranked = [(hit, hit.score, None) for hit in hits[:k]]
        else:
            model = load_reranker(reranker, device=device, share_encoder=searcher.encoder)
            mismatch = token_store_warning(model, searcher.reader)
            if mismatch is not None:
                log.warning("index %s: %s", index, mismatch)
            scores = rerank_hits_many(model, searcher.reader, [query], [hits])[0]
            relevance = model.relevance_scores(query, scores)
            ranked = [
                (hits[i], float(scores[i]), float(relevance[i]) if relevance is not None else None)
                for i in order_by_score(scores)[:k]
            ]
    finally:
        searcher.reader.close()
    return [
        hit_line(rank, score, hit.document.id, probability, hit.document.full_text)
        for rank, (hit, score, probability) in enumerate(ranked, start=1)
    ]


def hit_line(rank: int, score: float, doc_id: str, probability: float | None, text: str) -> str:
    r"""One line of ``loupe search`` output, local or remote.

    >>> hit_line(1, 7.25, "d3", 0.5, "Dogs are\nloyal.")
    '  1  7.2500  d3  P=0.500  Dogs are loyal.'
    """
    shown = f"P={probability:.3f}  " if probability is not None else ""
    one_line = text.replace("\n", " ")[:100]
    return f"{rank:>3}  {score:.4f}  {doc_id}  {shown}{one_line}"
