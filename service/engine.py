"""The engine: model and index work behind the API, knowing nothing of HTTP.

Every method is synchronous and batched (``*_many`` takes the items of several requests and
makes one model call); the micro-batcher runs them in a worker thread. The first stage is
the dual encoder over a :class:`index.live.LiveIndex`; re-ranking goes through the
:class:`models.reranker.Reranker` protocol only, so a learned re-ranker can replace the
default without changes here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch

from index.builder import encode_chunk
from index.metadata_filter import MetadataFilter
from index.records import Document
from index.rerank import order_by_score
from index.rerank import rerank_hits_many as score_hits
from index.searcher import needs_query_vectors
from models.array_cache import ArrayCache
from models.late_reranker import LateInteractionReranker
from models.onnx_backbone import frozen_backbone_fingerprint
from models.registry import reranker_max_tokens, reranker_window_tokens
from service.generation import GenerateJob, GenerateOutcome, QueryGenerator

if TYPE_CHECKING:
    from index.live import LiveIndex
    from index.searcher import Hit
    from models.encoder import TextEncoder
    from models.reranker import Reranker

log = logging.getLogger(__name__)

# A token never covers more characters than this (WordPiece maps longer words to [UNK]);
# texts are cut here before tokenising for truncation, so a 1 MB text costs no more.
_MAX_CHARS_PER_TOKEN = 64
# Assumed length of a stored passage when estimating a search's batching cost.
_SEARCH_DOC_TOKENS = 96
# Key prefixes of a query's first-stage vector and re-ranker matrix in the query cache.
_QUERY_VECTOR = "vector\x00"
_QUERY_MATRIX = "matrix\x00"


@dataclass(frozen=True)
class RerankJob:
    """One ``/v1/rerank`` request: a query and its documents (texts)."""

    query: str
    documents: Sequence[str]
    max_tokens_per_doc: int | None = None
    keep_end: bool = False
    """Cut documents from the start, keeping their last ``max_tokens_per_doc`` tokens."""


@dataclass(frozen=True)
class RerankOutcome:
    """Scores in input order, tokens the model saw, and documents cut by the token limit."""

    scores: np.ndarray
    total_tokens: int
    truncated: int
    relevance: np.ndarray | None = None
    """Probabilities of relevance in input order, where the re-ranker is calibrated."""


@dataclass(frozen=True)
class SearchJob:
    """One ``/v1/search`` request."""

    query: str
    top_n: int = 10
    candidates: int = 100
    rerank: bool = True
    where: MetadataFilter | None = None
    """Only documents whose metadata passes this filter."""
    first_stage: str = "dense"
    """``dense``, ``lexical`` or ``hybrid`` (see ``index.searcher.FIRST_STAGES``)."""


@dataclass(frozen=True)
class RankedHit:
    """A hit after re-ranking: ``score`` is the re-ranker's (or first-stage) score;
    ``relevance`` its probability of relevance where the re-ranker is calibrated."""

    key: int
    document: Document
    score: float
    first_stage_score: float
    relevance: float | None = None


@dataclass(frozen=True)
class SearchOutcome:
    """Ranked hits and the seconds each stage of the merged batch took."""

    hits: list[RankedHit]
    encode_seconds: float
    first_stage_seconds: float
    rerank_seconds: float


@dataclass(frozen=True)
class EmbedOutcome:
    vectors: np.ndarray
    total_tokens: int


T = TypeVar("T")


def chunks(items: Iterable[T], size: int) -> Iterable[list[T]]:
    """Lists of at most ``size`` items.

    >>> [len(c) for c in chunks(iter(range(5)), 2)]
    [2, 2, 1]
    """
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class Engine:
    """Encoder, re-ranker and live index, with the batched operations the API needs.

    Args:
        encoder: the first-stage dual encoder (also counts and truncates tokens).
        reranker: any :class:`models.reranker.Reranker`.
        index: the live index searched and written.
        snapshot_every: persist the FAISS index after this many document writes.
    """

    def __init__(
        self,
        encoder: TextEncoder,
        reranker: Reranker,
        index: LiveIndex,
        *,
        snapshot_every: int = 1000,
        generator: QueryGenerator | None = None,
        query_cache: ArrayCache | None = None,
    ):
        _check_dimension(encoder, index)
        self.encoder = encoder
        self.reranker = reranker
        self.index = index
        self.snapshot_every = snapshot_every
        self.generator = generator
        self.query_cache = query_cache
        """Encodings of queries searched before: their first-stage vectors and, where the
        re-ranker shares the encoder, its query matrices (the models never change)."""
        self._writes = 0
        self._write_lock = threading.Lock()
        self._retired: LiveIndex | None = None
        """The index a reload replaced: closed at the next reload or at shutdown, so that a
        read still running on it (document reads run outside the model thread) finishes."""
        self.written = {"encoded": 0, "kept": 0}
        """Documents written, by how they got their encodings (``/metrics`` reads it)."""
        self._encoder_fingerprint = frozen_backbone_fingerprint(encoder.backbone.model)
        self.reuses_encodings = index.read_only or index.encoded_by(self._encoder_fingerprint)
        """Whether a document sent again unchanged keeps its stored encodings: only where
        the index's vectors come from this encoder's weights (else re-sending documents is
        how they are encoded with it)."""
        if not self.reuses_encodings:
            log.info(
                "index %s: its vectors come from other (or unrecorded) encoder weights; "
                "documents sent again are encoded again",
                index.reader.folder,
            )

    # --- descriptions ---------------------------------------------------------------------

    @property
    def encoder_name(self) -> str:
        return self.encoder.model_name

    @property
    def reranker_name(self) -> str:
        return self.reranker.name

    @property
    def has_lexical(self) -> bool:
        """Whether the index has its full-text index (every index does where SQLite has FTS5)."""
        return self.index.docstore.has_lexical

    def caches(self) -> dict[str, ArrayCache]:
        """The caches the engine keeps, by name: ``query`` and, for a late-interaction
        re-ranker with one, ``document``."""
        found = {"query": self.query_cache}
        if isinstance(self.reranker, LateInteractionReranker):
            found["document"] = self.reranker.cache
        return {name: cache for name, cache in found.items() if cache is not None}

    @property
    def calibrated(self) -> bool:
        """Whether the re-ranker maps its scores to probabilities of relevance (a fitted
        calibration, or a cross-encoder's own sigmoid)."""
        return self.reranker.calibrated

    @property
    def dimension(self) -> int:
        return self.encoder.dim

    @property
    def max_length(self) -> int:
        return self.encoder.max_length

    @property
    def text_token_limit(self) -> int:
        """Tokens of a text the encoder reads, its special tokens ([CLS], [SEP]) not counted:
        what :meth:`truncate` keeps for it."""
        specials = self.encoder.backbone.tokenizer.num_special_tokens_to_add(pair=False)
        return self.max_length - int(specials)

    @property
    def rerank_max_length(self) -> int:
        """Tokens of a document the re-ranker reads (across its windows)."""
        return reranker_max_tokens(self.reranker) or self.max_length

    def window_token_limit(self, windows: int) -> int | None:
        """Text tokens (special tokens not counted) that the re-ranker's first ``windows``
        windows cover, or None when it does not read documents in windows."""
        return reranker_window_tokens(self.reranker, windows)

    def document_count(self) -> int:
        return len(self.index)

    @property
    def read_only(self) -> bool:
        """Whether the index takes no writes (a serving replica)."""
        return self.index.read_only

    @property
    def index_generation(self) -> str:
        """The build (or snapshot) of the index served."""
        return self.index.manifest.generation

    def replace_index(self, index: LiveIndex) -> None:
        """Serve ``index`` from now on (a read-only service's reload; run it on the model
        thread, between batches). The replaced index is closed at the next replacement."""
        _check_dimension(self.encoder, index)
        if self._retired is not None:
            self._retired.close()
        self._retired, self.index = self.index, index

    # --- tokens ---------------------------------------------------------------------------

    def estimate_tokens(self, texts: Iterable[str], cap: int | None = None) -> int:
        """Cheap token estimate for batching (4 characters a token, capped at ``cap``, by
        default the encoder's max length).

        No tokenizer runs here: it is called on the event loop for every request.
        """
        cap = cap or self.max_length
        return sum(min(len(text) // 4 + 2, cap) for text in texts)

    def estimate_search_tokens(self, job: SearchJob) -> int:
        """Batching cost of a search: the query, plus its candidates when re-ranked."""
        per_candidate = min(_SEARCH_DOC_TOKENS, self.max_length)
        candidates = max(job.candidates, job.top_n) if job.rerank else 0
        return self.estimate_tokens([job.query]) + candidates * per_candidate

    def count_tokens(self, texts: Sequence[str], max_length: int | None = None) -> int:
        """Tokens of ``texts`` cut at ``max_length`` (default: the encoder's limit)."""
        total = 0
        for start in range(0, len(texts), 256):
            total += sum(self.encoder.count_tokens(texts[start : start + 256], max_length))
        return total

    def truncate(
        self, texts: Sequence[str], max_tokens: int, keep_end: bool = False
    ) -> tuple[list[str], int]:
        """Cut each text after its first ``max_tokens`` tokens (special tokens not counted),
        or with ``keep_end`` before its last ``max_tokens``.

        Returns the texts and how many were cut.
        """
        out = list(texts)
        # A text of at most max_tokens characters has at most max_tokens tokens.
        long = [i for i, text in enumerate(out) if len(text) > max_tokens]
        if not long:
            return out, 0
        limit = max_tokens * _MAX_CHARS_PER_TOKEN
        if keep_end:
            return self._keep_ends(out, long, max_tokens, limit)
        heads = [out[i][:limit] for i in long]
        encoded = self.encoder.backbone.tokenizer(
            heads,
            add_special_tokens=False,
            truncation=True,
            max_length=max_tokens,
            return_offsets_mapping=True,
        )
        cut = 0
        for i, head, offsets in zip(long, heads, encoded["offset_mapping"], strict=True):
            end = int(offsets[-1][1]) if offsets else 0
            if end < len(out[i]) and out[i][end:].strip():
                cut += 1
            out[i] = head[:end]
        return out, cut

    def _keep_ends(
        self, out: list[str], long: list[int], max_tokens: int, limit: int
    ) -> tuple[list[str], int]:
        """:meth:`truncate` from the start: the texts at ``long`` keep their last
        ``max_tokens`` tokens, found among the tokens of their last ``limit`` characters
        (whose first token may be a word cut in two, and is then dropped with the rest)."""
        tails = [out[i][-limit:] for i in long]
        encoded = self.encoder.backbone.tokenizer(
            tails, add_special_tokens=False, return_offsets_mapping=True
        )
        cut = 0
        for i, tail, offsets in zip(long, tails, encoded["offset_mapping"], strict=True):
            start = int(offsets[-max_tokens][0]) if len(offsets) > max_tokens else 0
            skipped = len(out[i]) - len(tail) + start
            if out[i][:skipped].strip():
                cut += 1
            out[i] = out[i][skipped:]
        return out, cut

    # --- rerank ---------------------------------------------------------------------------

    def rerank_many(self, jobs: Sequence[RerankJob]) -> list[RerankOutcome]:
        """Score each job's documents against its query, all jobs in one model call."""
        prepared: list[list[str]] = []
        truncated: list[int] = []
        for job in jobs:
            if job.max_tokens_per_doc is None:
                docs, cut = list(job.documents), 0
            else:
                docs, cut = self.truncate(job.documents, job.max_tokens_per_doc, job.keep_end)
            prepared.append(docs)
            truncated.append(cut)
        queries = [job.query for job in jobs]
        if isinstance(self.reranker, LateInteractionReranker):
            # it counts the tokens it read from the documents' matrices
            scores, document_tokens = self.reranker.score_many_counted(
                queries,
                prepared,
                self._rerank_query_matrices(queries),
                # an indexed document is scored as /v1/search scores it, not encoded again
                self.index.matrices_for_texts,
            )
        else:
            scores = self.reranker.score_many(queries, prepared)
            document_tokens = [self.count_tokens(d, self.rerank_max_length) for d in prepared]
        return [
            RerankOutcome(
                scores=np.asarray(job_scores, dtype=np.float32),
                total_tokens=self.count_tokens([query]) + tokens,
                truncated=cut,
                relevance=self.reranker.relevance_scores(query, job_scores),
            )
            for query, job_scores, tokens, cut in zip(
                queries, scores, document_tokens, truncated, strict=True
            )
        ]

    def _rerank_query_matrices(self, queries: list[str]) -> list[torch.Tensor | None] | None:
        """The late-interaction re-ranker's query matrices from the query cache, which a
        search of the same query fills too; the missing ones are encoded once each and kept.
        None without a query cache: the re-ranker encodes them itself."""
        if self.query_cache is None:
            return None
        matrices = [self._cached_matrix(query) for query in queries]
        self._encode_missing_matrices(queries, [True] * len(queries), matrices)
        return matrices

    def rerank_hits(self, query: str, hits: Sequence[Hit]) -> list[RankedHit]:
        """Re-score first-stage hits for one query and sort them (see ``rerank_hits_many``)."""
        return self.rerank_hits_many([query], [hits])[0]

    def rerank_hits_many(
        self,
        queries: Sequence[str],
        hits: Sequence[Sequence[Hit]],
        query_tokens: Sequence[torch.Tensor | None] | None = None,
    ) -> list[list[RankedHit]]:
        """Re-score each query's first-stage hits with the re-ranker; best first.

        A late-interaction re-ranker scores the token matrices the index stored at build
        time (no transformer pass over the documents); hits the store lacks (documents added
        since, or a store written by another model) are encoded. ``query_tokens``: the
        queries' re-ranker matrices where the first stage's pass already gave them.
        """
        scores = (
            score_hits(
                self.reranker, self.index.reader, list(queries), hits, query_tokens=query_tokens
            )
            if queries
            else []
        )
        ranked: list[list[RankedHit]] = []
        for query, row, row_scores in zip(queries, hits, scores, strict=True):
            relevance = self.reranker.relevance_scores(query, row_scores)
            ranked.append(
                [
                    RankedHit(
                        row[i].key,
                        row[i].document,
                        float(row_scores[i]),
                        row[i].score,
                        float(relevance[i]) if relevance is not None else None,
                    )
                    for i in order_by_score(row_scores)
                ]
            )
        return ranked

    def _encode_search_queries(
        self, queries: list[str], rerank: Sequence[bool]
    ) -> tuple[np.ndarray, list[torch.Tensor | None] | None]:
        """First-stage vectors ``(n, dim)`` and, when the late-interaction re-ranker runs on
        the same encoder, the re-ranker's query matrices ``(q_tokens, dim')`` from that same
        transformer pass (one pass per query instead of two; None for a query the re-ranker
        must encode itself).

        Queries in the query cache, and repeats within the batch, are not encoded again. With
        a query cache, a wanted matrix the shared pass cannot give (a query longer than the
        re-ranker reads) is encoded here by the re-ranker and kept too."""
        reranker = self.reranker
        shared = (
            isinstance(reranker, LateInteractionReranker)
            and reranker.model.encoder is self.encoder
            and any(rerank)
        )
        wants_matrix = [shared and r for r in rerank]
        vectors = np.zeros((len(queries), self.encoder.dim), dtype=np.float32)
        matrices: list[torch.Tensor | None] = [None] * len(queries)
        missing: list[int] = []
        for i, query in enumerate(queries):
            vector = self._cached(_QUERY_VECTOR, query)
            if vector is None:
                missing.append(i)
                continue
            vectors[i] = vector
            if wants_matrix[i]:
                matrices[i] = self._cached_matrix(query)
        fresh = list(dict.fromkeys(queries[i] for i in missing))
        if fresh:
            encoded = self._encode_queries(fresh, any(wants_matrix[i] for i in missing))
            for i in missing:
                vectors[i], matrices[i] = encoded[queries[i]]
        if shared and self.query_cache is not None:
            self._encode_missing_matrices(queries, wants_matrix, matrices)
        return vectors, matrices if shared else None

    def _encode_missing_matrices(
        self,
        queries: list[str],
        wants_matrix: Sequence[bool],
        matrices: list[torch.Tensor | None],
    ) -> None:
        """Fill ``matrices`` where a matrix is wanted and none was found, with the re-ranker's
        own encoding of the distinct queries, and keep those in the query cache."""
        cache, reranker = self.query_cache, self.reranker
        assert isinstance(reranker, LateInteractionReranker) and cache is not None
        lacking = [i for i, m in enumerate(matrices) if m is None and wants_matrix[i]]
        distinct = list(dict.fromkeys(queries[i] for i in lacking))
        if not distinct:
            return
        encoded = dict(zip(distinct, reranker.query_matrices(distinct), strict=True))
        for query, matrix in encoded.items():
            cache.put(_QUERY_MATRIX + query, matrix.cpu().numpy().copy())
        for i in lacking:
            matrices[i] = encoded[queries[i]]

    def _encode_queries(
        self, queries: list[str], with_matrices: bool
    ) -> dict[str, tuple[np.ndarray, torch.Tensor | None]]:
        """One transformer pass over distinct queries: each one's vector ``(dim,)`` and, with
        ``with_matrices``, the re-ranker's matrix from the same states; kept in the cache."""
        if with_matrices:
            assert isinstance(self.reranker, LateInteractionReranker)
            states = self.encoder.encode_tokens(queries)
            vectors = self.encoder.pool(states).float().cpu().numpy()
            matrices = self.reranker.query_matrices_from_states(self.encoder, states)
        else:
            vectors = self.encoder.encode(queries)
            matrices = [None] * len(queries)
        cache = self.query_cache
        if cache is not None:
            for query, vector, matrix in zip(queries, vectors, matrices, strict=True):
                # copies: a row or slice would keep its whole batch alive
                cache.put(_QUERY_VECTOR + query, vector.copy())
                if matrix is not None:
                    cache.put(_QUERY_MATRIX + query, matrix.cpu().numpy().copy())
        return {
            query: (vector, matrix)
            for query, vector, matrix in zip(queries, vectors, matrices, strict=True)
        }

    def _cached(self, kind: str, query: str) -> np.ndarray | None:
        """``query``'s cached vector or matrix (``kind``: a key prefix), or None."""
        return self.query_cache.get(kind + query) if self.query_cache is not None else None

    def _cached_matrix(self, query: str) -> torch.Tensor | None:
        matrix = self._cached(_QUERY_MATRIX, query)
        return torch.from_numpy(matrix) if matrix is not None else None

    def _encode_needed_queries(
        self, jobs: Sequence[SearchJob]
    ) -> tuple[np.ndarray, list[torch.Tensor | None] | None]:
        """:meth:`_encode_search_queries` for the jobs that use a query encoding (a dense or
        hybrid first stage, or re-ranking); the others (lexical, not re-ranked) get a zero
        row and no transformer pass."""
        needed = [
            i for i, job in enumerate(jobs) if job.rerank or needs_query_vectors(job.first_stage)
        ]
        vectors = np.zeros((len(jobs), self.encoder.dim), dtype=np.float32)
        query_tokens: list[torch.Tensor | None] | None = None
        if needed:
            encoded, encoded_tokens = self._encode_search_queries(
                [jobs[i].query for i in needed], [jobs[i].rerank for i in needed]
            )
            vectors[needed] = encoded
            if encoded_tokens is not None:
                query_tokens = [None] * len(jobs)
                for i, tokens in zip(needed, encoded_tokens, strict=True):
                    query_tokens[i] = tokens
        return vectors, query_tokens

    # --- search ---------------------------------------------------------------------------

    def search_many(self, jobs: Sequence[SearchJob]) -> list[SearchOutcome]:
        """First stage for all queries at once, then one re-ranking call for those asking."""
        started = time.perf_counter()
        vectors, query_tokens = self._encode_needed_queries(jobs)
        encoded = time.perf_counter()
        first = self._first_stage(jobs, vectors)
        searched = time.perf_counter()
        wanted = [i for i, job in enumerate(jobs) if job.rerank and first[i]]
        reranked = self.rerank_hits_many(
            [jobs[i].query for i in wanted],
            [first[i] for i in wanted],
            [query_tokens[i] for i in wanted] if query_tokens is not None else None,
        )
        by_job = dict(zip(wanted, reranked, strict=True))
        done = time.perf_counter()
        outcomes = []
        for i, job in enumerate(jobs):
            hits = by_job.get(i) or [
                RankedHit(hit.key, hit.document, hit.score, hit.score) for hit in first[i]
            ]
            outcomes.append(
                SearchOutcome(
                    hits=hits[: job.top_n],
                    encode_seconds=encoded - started,
                    first_stage_seconds=searched - encoded,
                    rerank_seconds=done - searched if wanted else 0.0,
                )
            )
        return outcomes

    def _first_stage(self, jobs: Sequence[SearchJob], vectors: np.ndarray) -> list[list[Hit]]:
        """Each job's first-stage hits: unfiltered dense jobs in one search at their deepest
        depth, every other job on its own."""
        first: list[list[Hit]] = [[] for _ in jobs]
        plain = [
            i for i, job in enumerate(jobs) if job.where is None and job.first_stage == "dense"
        ]
        batched = set(plain)
        if plain:
            depth = max(max(jobs[i].candidates, jobs[i].top_n) for i in plain)
            rows = self.index.search_vectors(vectors[plain], depth)
            for i, row in zip(plain, rows, strict=True):
                first[i] = row[: max(jobs[i].candidates, jobs[i].top_n)]
        for i, job in enumerate(jobs):
            if i in batched:
                continue
            depth = max(job.candidates, job.top_n)
            rows = self.index.search_first_stage(
                job.first_stage, [job.query], vectors[i : i + 1], depth, job.where
            )
            first[i] = rows[0]
        return first

    # --- embed ----------------------------------------------------------------------------

    def embed_many(self, batches: Sequence[Sequence[str]]) -> list[EmbedOutcome]:
        """Sentence vectors of each request's texts, encoded together."""
        flat = [text for texts in batches for text in texts]
        vectors = self.encoder.encode(flat)
        outcomes, start = [], 0
        for texts in batches:
            outcomes.append(
                EmbedOutcome(vectors[start : start + len(texts)], self.count_tokens(list(texts)))
            )
            start += len(texts)
        return outcomes

    # --- generate -------------------------------------------------------------------------

    def generate_many(self, jobs: Sequence[GenerateJob]) -> list[GenerateOutcome]:
        if self.generator is None:
            raise RuntimeError("no query generator is loaded")
        return self.generator.generate_many(jobs)

    # --- documents ------------------------------------------------------------------------

    def add_documents_many(self, batches: Sequence[Sequence[Document]]) -> list[list[int]]:
        """Encode every request's documents in one pass; store each request separately.

        The docstore (SQLite) is written before the in-memory index, so an acknowledged
        document survives a restart; a snapshot follows every ``snapshot_every`` writes.
        A late-interaction re-ranker's token matrices are stored with the documents, so
        searching them later runs no transformer over the documents. A document sent again
        unchanged (only its metadata may differ) keeps the vector and matrix stored for it:
        no model pass.
        """
        documents = [doc for docs in batches for doc in docs]
        token_model = None
        if isinstance(self.reranker, LateInteractionReranker) and self.reranker.model.fingerprint:
            token_model = self.reranker.model
        fingerprint = token_model.fingerprint if token_model is not None else None
        if self.reuses_encodings:
            stored = self.index.stored_encodings(documents, fingerprint)
        else:
            stored = {}
            self.index.note_writer(self._encoder_fingerprint)
        vectors, matrices = encode_chunk(documents, self.encoder, token_model, stored)
        self.written["kept"] += len(stored)
        self.written["encoded"] += len(documents) - len(stored)
        keys, start = [], 0
        for docs in batches:
            end = start + len(docs)
            keys.append(
                self.index.add(
                    list(docs),
                    vectors[start:end],
                    matrices[start:end] if fingerprint else None,
                    fingerprint,
                )
            )
            start = end
        self._count_writes(len(documents))
        return keys

    def add_documents(self, documents: Sequence[Document]) -> list[int]:
        return self.add_documents_many([documents])[0]

    def documents_by_id(self, doc_ids: Sequence[str]) -> dict[str, Document]:
        """The stored documents with these ids (those there are)."""
        stored = self.index.docstore.get_by_ids(doc_ids)
        return {doc_id: found.document for doc_id, found in stored.items()}

    def get_document(self, doc_id: str) -> Document | None:
        """The stored document with this id, or None."""
        stored = self.index.docstore.get(doc_id)
        return stored.document if stored is not None else None

    def list_documents(
        self, after_id: str | None, limit: int, where: MetadataFilter | None = None
    ) -> list[Document]:
        """Stored documents after ``after_id`` that ``where`` passes, in id order (see
        :meth:`DocStore.page`)."""
        return [stored.document for stored in self.index.docstore.page(after_id, limit, where)]

    def delete_document(self, doc_id: str) -> bool:
        return bool(self.delete_documents([doc_id]))

    def delete_documents(self, doc_ids: Sequence[str]) -> list[str]:
        """Delete documents by id; returns the ids there were."""
        deleted = self.index.delete_many(doc_ids)
        self._count_writes(len(deleted))
        return deleted

    def delete_matching(self, where: MetadataFilter) -> int:
        """Delete every document whose metadata passes ``where``; returns how many."""
        deleted = self.index.delete_matching(where)
        self._count_writes(deleted)
        return deleted

    def index_corpus(self, documents: Iterable[Document], chunk_size: int = 1024) -> int:
        """Add a corpus in chunks (first start with ``--corpus``) and snapshot; returns count."""
        total = 0
        for chunk in chunks(documents, chunk_size):
            self.add_documents(chunk)
            total += len(chunk)
            log.info("indexed %d documents", total)
        self.snapshot()
        return total

    def _count_writes(self, n: int) -> None:
        with self._write_lock:
            self._writes += n
            due = self._writes >= self.snapshot_every
        if due:
            self.snapshot()

    def snapshot(self) -> None:
        """Persist the FAISS index and manifest now."""
        with self._write_lock:
            self._writes = 0
        self.index.snapshot()

    def close(self) -> None:
        """Snapshot if anything was written since the last snapshot, then close the index
        (also when the snapshot fails, as with Qdrant down: the last manifest stays, and the
        next start catches up the documents stored after it)."""
        with self._write_lock:
            dirty = self._writes > 0
        try:
            if dirty:
                self.snapshot()
        finally:
            self.index.close()
            if self._retired is not None:
                self._retired.close()


def _check_dimension(encoder: TextEncoder, index: LiveIndex) -> None:
    """ValueError unless the index holds vectors of the encoder's dimension."""
    if index.manifest.dimension != encoder.dim:
        raise ValueError(
            f"encoder {encoder.model_name} gives {encoder.dim}-d vectors; "
            f"the index holds {index.manifest.dimension}-d"
        )
