"""The round-trip consistency filter for synthetic queries: keep a query when the first
stage ranks its own passage in the top k for it.

The first stage is an existing Loupe index (dense or BM25), a flat FAISS index built here
over a corpus's dual-encoder vectors, or a BM25 index built here over a corpus (seconds, where
encoding the corpus takes minutes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from index.bm25_index import BM25Index
from index.faiss_index import FaissIndex
from index.readers.corpus import read_corpus
from models.encoder import EncoderConfig, TextEncoder

FirstStage = Callable[[list[str], int], list[list[str]]]
"""queries, k -> the top-k document ids of each query."""


def index_first_stage(
    folder: Path, *, kind: str = "dense", device: str | None = None
) -> FirstStage:
    """Search an index folder built by ``loupe index build``."""
    from index.searcher import Searcher

    searcher = Searcher.open(folder, device=device)

    def search(queries: list[str], k: int) -> list[list[str]]:
        return [[h.document.id for h in row] for row in searcher.search(queries, k, kind)]

    return search


def faiss_first_stage(
    encoder: TextEncoder, doc_ids: Sequence[str], vectors: np.ndarray
) -> FirstStage:
    """Exact inner-product search over ``(n, dim)`` document vectors of ``encoder``."""
    index = FaissIndex.create(vectors.shape[1], "Flat", use_gpu=False)
    index.add(np.arange(len(doc_ids), dtype=np.int64), vectors.astype(np.float32))

    def search(queries: list[str], k: int) -> list[list[str]]:
        _, keys = index.search(encoder.encode(queries), k)
        return [[doc_ids[int(i)] for i in row if i >= 0] for row in keys]

    return search


def corpus_first_stage(
    corpus: Path, model: str = "default", device: str | None = None, show_progress: bool = False
) -> FirstStage:
    """Encode a whole corpus with the dual encoder and search it with flat FAISS."""
    encoder = TextEncoder(EncoderConfig(model=model, device=device))
    docs = list(read_corpus(corpus))
    vectors = encoder.encode(
        [d.full_text for d in docs], show_progress=show_progress, desc="encoding corpus"
    )
    return faiss_first_stage(encoder, [d.id for d in docs], vectors)


def consistency_ranks(
    first_stage: FirstStage, queries: Sequence[str], doc_ids: Sequence[str], k: int
) -> list[int | None]:
    """1-based rank of each query's own passage in its top k, or None when it is not there."""
    if k < 1:
        raise ValueError("the consistency filter's k must be at least 1")
    hits = first_stage(list(queries), k) if queries else []
    return [
        row.index(doc) + 1 if doc in row else None for row, doc in zip(hits, doc_ids, strict=True)
    ]


def bm25_corpus_first_stage(corpus: Path) -> FirstStage:
    """BM25 (bm25s, stemmed, the index's defaults) over a whole corpus."""
    docs = list(read_corpus(corpus))
    index = BM25Index.build(range(len(docs)), [d.full_text for d in docs])

    def search(queries: list[str], k: int) -> list[list[str]]:
        _, keys = index.search(queries, k)
        return [[docs[int(i)].id for i in row if i >= 0] for row in keys]

    return search
