"""Opening an index folder and searching it with the dual encoder."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from index.bm25_index import BM25Index
from index.docstore import DocStore
from index.errors import IndexCorruptError
from index.exact_search import top_k_inner_product
from index.faiss_index import FaissIndex
from index.fusion import reciprocal_rank_fusion
from index.manifest import Manifest, sha256_file
from index.metadata_filter import MetadataFilter
from index.qdrant_index import QdrantIndex, QdrantTarget
from index.records import Document
from index.token_store import TokenStore
from index.vector_index import ApproximateSearch, VectorIndex
from models.encoder import EncoderConfig, TextEncoder

log = logging.getLogger(__name__)

FIRST_STAGES = ("dense", "lexical", "hybrid", "bm25")
"""``dense``: the dual encoder's FAISS index; ``lexical``: the docstore's full-text index
(BM25, always current); ``hybrid``: the two fused by reciprocal rank; ``bm25``: the bm25s
index built with ``--bm25`` (Anserini's parameters; static)."""

EXACT_FILTER_LIMIT = 20_000
"""A filtered search over an approximate index scores up to this many passing documents
exactly, from the docstore's vectors, rather than through the index."""


@dataclass(frozen=True)
class Hit:
    key: int
    score: float
    document: Document


def fuse_hits(first: list[list[Hit]], second: list[list[Hit]], k: int) -> list[list[Hit]]:
    """Each query's two hit lists fused by reciprocal rank, cut to k; a hit's score is its
    fused score."""
    fused: list[list[Hit]] = []
    for a, b in zip(first, second, strict=True):
        documents = {hit.key: hit.document for hit in [*a, *b]}
        ranked = reciprocal_rank_fusion([[hit.key for hit in a], [hit.key for hit in b]])
        fused.append([Hit(key, score, documents[key]) for key, score in ranked[:k]])
    return fused


def needs_query_vectors(first_stage: str) -> bool:
    """Whether a first stage searches with the queries' dual-encoder vectors.

    >>> needs_query_vectors("hybrid"), needs_query_vectors("lexical")
    (True, False)
    """
    return first_stage in ("dense", "hybrid")


def check_first_stage(first_stage: str, where: MetadataFilter | None = None) -> None:
    """Raise ValueError for an unknown first stage, or a filter on one that takes none."""
    if first_stage not in FIRST_STAGES:
        raise ValueError(f"unknown first stage {first_stage!r}: {', '.join(FIRST_STAGES)}")
    if first_stage == "bm25" and where is not None:
        raise ValueError("the bm25 first stage takes no metadata filter: use lexical")


class FirstStageSearch(ABC):
    """The first stages of :data:`FIRST_STAGES` over one index, and dispatch among them."""

    @abstractmethod
    def search_vectors(
        self, query_vectors: np.ndarray, k: int, where: MetadataFilter | None = None
    ) -> list[list[Hit]]:
        """Top-k dense hits for ``query_vectors (q, dim)``."""

    @abstractmethod
    def search_lexical(
        self, queries: Sequence[str], k: int, where: MetadataFilter | None = None
    ) -> list[list[Hit]]:
        """Top-k hits of the docstore's full-text index."""

    @abstractmethod
    def search_bm25(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-k hits of the static BM25 index built with ``--bm25``."""

    def search_hybrid(
        self,
        query_vectors: np.ndarray,
        queries: Sequence[str],
        k: int,
        where: MetadataFilter | None = None,
    ) -> list[list[Hit]]:
        """The dense and full-text top-k lists fused by reciprocal rank (see
        :func:`fuse_hits`): what either first stage alone misses, the other may find."""
        dense = self.search_vectors(query_vectors, k, where)
        return fuse_hits(dense, self.search_lexical(queries, k, where), k)

    def search_first_stage(
        self,
        first_stage: str,
        queries: Sequence[str],
        query_vectors: np.ndarray | None,
        k: int,
        where: MetadataFilter | None = None,
    ) -> list[list[Hit]]:
        """Top-k hits per query from one of :data:`FIRST_STAGES`; ``query_vectors (q, dim)``
        are needed where :func:`needs_query_vectors`, ignored elsewhere; with ``where``,
        only documents whose metadata passes it (not with ``bm25``)."""
        check_first_stage(first_stage, where)
        if first_stage == "bm25":
            return self.search_bm25(queries, k)
        if first_stage == "lexical":
            return self.search_lexical(queries, k, where)
        if query_vectors is None:
            raise ValueError(f"the {first_stage} first stage needs the queries' vectors")
        if first_stage == "hybrid":
            return self.search_hybrid(query_vectors, queries, k, where)
        return self.search_vectors(query_vectors, k, where)


def stored_token_matrices(
    tokens: TokenStore | None, docstore: DocStore, keys: Sequence[int], fingerprint: str | None
) -> list[np.ndarray | None]:
    """The ``(tokens, d)`` matrices the re-ranker with ``fingerprint`` stored for ``keys``:
    from the token store a build wrote, else from the docstore (documents added while
    serving); None where neither has one."""
    if fingerprint is None:
        return [None] * len(keys)
    found: list[np.ndarray | None] = [None] * len(keys)
    if tokens is not None and tokens.meta.get("reranker_fingerprint") == fingerprint:
        found = tokens.get(keys)
    missing = [k for k, m in zip(keys, found, strict=True) if m is None]
    if missing:
        extra = docstore.get_tokens(missing, fingerprint)
        found = [
            m if m is not None else extra.get(int(k)) for k, m in zip(keys, found, strict=True)
        ]
    return found


class IndexReader(FirstStageSearch):
    """A loaded index folder: manifest, docstore and vector index, checked against each other."""

    def __init__(
        self,
        folder: Path,
        manifest: Manifest,
        docstore: DocStore,
        vectors: VectorIndex,
        tokens: TokenStore | None = None,
        bm25: BM25Index | None = None,
    ):
        self.folder = folder
        self.manifest = manifest
        self.docstore = docstore
        self.vectors = vectors
        self.tokens = tokens
        self.bm25 = bm25
        self.hidden: set[int] = set(docstore.removed_vector_keys().tolist())
        """Keys of documents gone whose vectors the vector index may still hold (see
        DocStore.removed_vector_keys): searches fetch that many more hits, so that they take
        no place among the k."""

    @classmethod
    def open(
        cls,
        folder: str | Path,
        *,
        verify: bool = True,
        use_gpu: bool | None = None,
        read_only: bool = False,
        qdrant: QdrantTarget | None = None,
        approximate: ApproximateSearch | None = None,
    ) -> IndexReader:
        """Open and check an index folder. ``read_only``: write nothing into it (the
        docstore opened read-only; see :class:`DocStore`) nor into its Qdrant collection.
        ``qdrant``: for an index whose vectors are in Qdrant, where to reach it (default:
        the location its manifest names) and the API key. ``approximate``: how far an approximate
        index searches, where not as its file says."""
        folder = Path(folder)
        manifest = Manifest.load(folder)
        docstore_path = folder / manifest.docstore_file
        if not docstore_path.is_file():
            raise IndexCorruptError(
                f"{folder}: manifest names {docstore_path.name}, which is missing"
            )
        vectors = _open_vectors(folder, manifest, verify=verify, use_gpu=use_gpu, qdrant=qdrant)
        (approximate or ApproximateSearch()).apply(vectors)
        tokens = None
        if manifest.token_store_file:
            token_path = folder / manifest.token_store_file
            if not token_path.is_dir():
                raise IndexCorruptError(f"{folder}: token store {token_path.name} is missing")
            try:
                tokens = TokenStore(token_path)
            except (OSError, ValueError, KeyError) as exc:
                raise IndexCorruptError(f"{token_path}: unreadable token store: {exc}") from exc
        bm25 = None
        if manifest.bm25_dir:
            try:
                bm25 = BM25Index.load(folder / manifest.bm25_dir)
            except (OSError, ValueError) as exc:
                raise IndexCorruptError(f"{folder}: unreadable BM25 index: {exc}") from exc
        docstore = DocStore(docstore_path, read_only=read_only)
        reader = cls(folder, manifest, docstore, vectors, tokens, bm25)
        if not (read_only and isinstance(vectors, QdrantIndex)):
            # a shared Qdrant collection is written by its writer alone (which upserts as
            # it goes, so it already holds what came after the snapshot)
            reader.catch_up()
        return reader

    def catch_up(self) -> int:
        """Add vectors of documents stored after the FAISS snapshot (docstore is the truth)."""
        added = 0
        for keys, vectors in self.docstore.iter_vectors(after_key=self.manifest.max_key):
            self.vectors.add(keys, vectors, self.metadata_for(keys))
            added += len(keys)
        if added:
            log.info("added %d documents stored after the index snapshot", added)
        return added

    def search_vectors(
        self, query_vectors: np.ndarray, k: int, where: MetadataFilter | None = None
    ) -> list[list[Hit]]:
        """Top-k hits for ``query_vectors (q, dim)``; documents deleted since are skipped.

        With ``where``, only documents whose metadata passes it: through the index with the
        passing keys as a selector when the index is flat (exact) or more than
        ``EXACT_FILTER_LIMIT`` pass (an approximate index may then miss some), else scored
        exactly from the passing documents' stored vectors.
        """
        if where is None:
            scores, keys = self.vectors.search(query_vectors, k + self._hidden_margin(k))
            return [row[:k] for row in self._hits(scores, keys)]
        return self.search_among(query_vectors, k, self.docstore.keys_matching(where), where=where)

    def search_among(
        self,
        query_vectors: np.ndarray,
        k: int,
        allowed: np.ndarray,
        allowed_vectors: np.ndarray | None = None,
        where: MetadataFilter | None = None,
    ) -> list[list[Hit]]:
        """Top-k hits among the docstore keys ``allowed (n,)`` (see :meth:`search_vectors`);
        where they are scored exactly, from ``allowed_vectors (n, dim)`` (row i the vector
        of ``allowed[i]``) if given, else from the docstore. ``where``: the filter that
        passes ``allowed``, which a Qdrant index applies itself (see
        :meth:`_search_qdrant_where`) rather than being sent every key."""
        if not self.searches_exactly(len(allowed)):
            if where is not None and isinstance(self.vectors, QdrantIndex):
                hits = self._search_qdrant_where(query_vectors, k, where)
                if hits is not None:
                    return hits
            scores, keys = self.vectors.search_among(query_vectors, k, allowed)
        else:
            if allowed_vectors is None:
                allowed, allowed_vectors = self.docstore.vectors_for_keys(allowed)
            scores, keys = top_k_inner_product(
                np.atleast_2d(query_vectors), allowed, allowed_vectors, k
            )
        return self._hits(scores, keys)

    def _search_qdrant_where(
        self, query_vectors: np.ndarray, k: int, where: MetadataFilter
    ) -> list[list[Hit]] | None:
        """Top-k hits by Qdrant's own filter over the payloads, if it can say ``where`` and
        every hit passes ``where`` in the docstore too (a list in the metadata may pass
        Qdrant's match and not the docstore's); None otherwise."""
        assert isinstance(self.vectors, QdrantIndex)
        found = self.vectors.search_where(query_vectors, k + self._hidden_margin(k), where)
        if found is None:
            return None
        hits = [row[:k] for row in self._hits(*found)]
        if all(where.matches(hit.document.metadata) for row in hits for hit in row):
            return hits
        log.debug("Qdrant's filter passed documents the docstore's does not; filtering by id")
        return None

    def _hidden_margin(self, k: int) -> int:
        """Hits to fetch beyond k for the hidden keys that may come first (capped, so that
        a long-lived HNSW index with many deletes still searches cheaply)."""
        return min(len(self.hidden), 10 * k + 100)

    def searches_exactly(self, allowed: int) -> bool:
        """Whether a search among this many allowed documents scores their stored vectors
        exactly rather than going through an approximate index with a selector."""
        return not self.vectors.exhaustive and allowed <= EXACT_FILTER_LIMIT

    def search_bm25(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-k BM25 hits (an index built with ``--bm25``)."""
        if self.bm25 is None:
            raise ValueError(f"{self.folder} has no BM25 index: build it with --bm25")
        scores, keys = self.bm25.search(queries, k)
        return self._hits(scores, keys)

    def search_lexical(
        self, queries: Sequence[str], k: int, where: MetadataFilter | None = None
    ) -> list[list[Hit]]:
        """Top-k hits of the docstore's full-text index (BM25, always current; see
        index/lexical.py), among the documents ``where`` passes if given."""
        scores, keys = self.docstore.lexical_search(queries, k, where)
        return self._hits(scores, keys)

    def metadata_for(self, keys: np.ndarray) -> list[dict[str, Any]] | None:
        """The documents' metadata for a vector index that keeps it (else None)."""
        if not self.vectors.keeps_metadata:
            return None
        documents = self.docstore.get_by_keys(keys)
        return [documents[int(key)].metadata for key in keys]

    def _hits(self, scores: np.ndarray, keys: np.ndarray) -> list[list[Hit]]:
        wanted = {int(x) for x in keys.ravel() if x >= 0}
        documents = self.docstore.get_by_keys(wanted)
        results: list[list[Hit]] = []
        for row_scores, row_keys in zip(scores, keys, strict=True):
            results.append(
                [
                    Hit(int(key), float(score), documents[int(key)])
                    for score, key in zip(row_scores, row_keys, strict=True)
                    if key >= 0 and int(key) in documents
                ]
            )
        return results

    def token_matrices(
        self, keys: Sequence[int], fingerprint: str | None
    ) -> list[np.ndarray | None]:
        """Token matrices the model with this fingerprint stored for the keys: from the token
        store written at build time, else from the docstore (documents added while serving);
        None where neither has one."""
        return stored_token_matrices(self.tokens, self.docstore, keys, fingerprint)

    def close(self) -> None:
        self.docstore.close()
        self.vectors.close()


def _open_vectors(
    folder: Path,
    manifest: Manifest,
    *,
    verify: bool,
    use_gpu: bool | None,
    qdrant: QdrantTarget | None,
) -> VectorIndex:
    """The manifest's vector index, checked against it: its FAISS file (checksum, count and
    dimension), or its Qdrant collection (dimension; writes while serving change its count)."""
    if manifest.vectors_backend == "qdrant":
        if manifest.qdrant_collection is None or manifest.qdrant_location is None:
            raise IndexCorruptError(f"{folder}: the manifest names no Qdrant collection")
        target = qdrant or QdrantTarget(manifest.qdrant_location)
        try:
            index: VectorIndex = QdrantIndex.open(target, manifest.qdrant_collection)
        except ValueError as exc:
            raise IndexCorruptError(f"{folder}: {exc}") from exc
        if index.dimension != manifest.dimension:
            index.close()
            raise IndexCorruptError(
                f"Qdrant collection {manifest.qdrant_collection} holds {index.dimension}-d "
                f"vectors; the manifest says {manifest.dimension}"
            )
        return index
    if manifest.vectors_backend != "faiss":
        raise IndexCorruptError(f"{folder}: unknown vectors backend {manifest.vectors_backend!r}")
    if qdrant is not None:
        log.warning(
            "%s keeps its vectors in a FAISS file: Qdrant at %s is not used (a Qdrant URL "
            "applies to indexes built with one; rebuild with --qdrant-url to move them)",
            folder,
            qdrant.location,
        )
    vectors_path = folder / manifest.vectors_file
    if not vectors_path.is_file():
        raise IndexCorruptError(f"{folder}: manifest names {vectors_path.name}, which is missing")
    if verify and sha256_file(vectors_path) != manifest.vectors_sha256:
        raise IndexCorruptError(f"{vectors_path} does not match the manifest's checksum")
    index = FaissIndex.load(vectors_path, use_gpu=use_gpu)
    if len(index) != manifest.count or index.dimension != manifest.dimension:
        raise IndexCorruptError(
            f"{vectors_path} holds {len(index)} vectors of dimension {index.dimension}; "
            f"the manifest says {manifest.count} of {manifest.dimension}"
        )
    return index


class Searcher:
    """Dual-encoder search over an index folder."""

    def __init__(self, reader: IndexReader, encoder: TextEncoder):
        self.reader = reader
        self.encoder = encoder

    @classmethod
    def open(
        cls,
        folder: str | Path,
        *,
        model: str | None = None,
        device: str | None = None,
        qdrant: QdrantTarget | None = None,
        approximate: ApproximateSearch | None = None,
    ) -> Searcher:
        """Open an index folder to search it (``loupe search``, ``loupe eval``, negative
        mining): read-only, so that it works on a read-only mount and takes no write lock
        from a service writing to the same folder (``qdrant``, ``approximate``: see
        :meth:`IndexReader.open`)."""
        reader = IndexReader.open(folder, read_only=True, qdrant=qdrant, approximate=approximate)
        encoder = TextEncoder(EncoderConfig(model=model or reader.manifest.model, device=device))
        if encoder.dim != reader.manifest.dimension:
            raise ValueError(
                f"model {encoder.model_name} gives {encoder.dim}-d vectors; "
                f"the index holds {reader.manifest.dimension}-d"
            )
        return cls(reader, encoder)

    def search(
        self,
        queries: Sequence[str],
        k: int = 10,
        first_stage: str = "dense",
        where: MetadataFilter | None = None,
    ) -> list[list[Hit]]:
        """Top-k hits per query from one of :data:`FIRST_STAGES` (see
        :meth:`FirstStageSearch.search_first_stage`)."""
        check_first_stage(first_stage, where)
        queries = list(queries)
        vectors = self.encoder.encode(queries) if needs_query_vectors(first_stage) else None
        return self.reader.search_first_stage(first_stage, queries, vectors, k, where)
