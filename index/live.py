"""A writable index for the service: documents added or deleted while serving.

The docstore is written first (it is the source of truth); the FAISS index in memory (or the
Qdrant collection) follows. ``snapshot`` persists the FAISS index and a new manifest
atomically. After a crash, opening the folder replays documents stored after the last
snapshot (see ``IndexReader.catch_up``) and skips deleted ones, so nothing acknowledged is
lost.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index.builder import BUILD_CONFIG_META, write_snapshot
from index.docstore import DocStore
from index.errors import ReadOnlyIndexError, VectorStoreUnavailableError
from index.faiss_index import FaissIndex
from index.manifest import MANIFEST_NAME, Manifest, new_generation
from index.metadata_filter import MetadataFilter
from index.qdrant_index import QdrantIndex, QdrantTarget, collection_name
from index.records import Document
from index.reuse import (
    ENCODER_META,
    MIXED_ENCODERS,
    Encoding,
    MatrixLookup,
    recorded_encoder,
    unchanged_encodings,
)
from index.searcher import FirstStageSearch, Hit, IndexReader
from index.token_quantization import TokenDtype
from index.vector_index import ApproximateSearch, VectorIndex

log = logging.getLogger(__name__)

HIDDEN_SHARE_WARNED = 0.1
"""Opening an index whose vector index holds more than this share of deleted documents'
vectors (HNSW cannot remove them) logs a warning naming the command that drops them."""

# How documents added while serving keep their token matrices when the index has no token
# store to follow: the same default as ``loupe index build``.
DEFAULT_LIVE_TOKEN_DTYPE = TokenDtype.int8
_FILTERS_CACHED = 64
_KEYS_CACHED = 4_000_000
"""A live index keeps the passing keys of up to this many recent filters, and of keys in all
(8 bytes each: 32 MB), and keeps them current through its own writes."""
DEFAULT_FILTER_VECTOR_BYTES = 256 * 2**20
"""For filters searched exactly (see :meth:`IndexReader.searches_exactly`), a live index keeps
the passing vectors too, up to this many bytes in all by default."""


@dataclass
class _KeptFilter:
    """A recent filter, the keys it passes (ascending) and, once it has been searched
    exactly, their vectors ``(len(keys), dim)`` row for row."""

    where: MetadataFilter
    keys: np.ndarray
    vectors: np.ndarray | None = None

    def apply_write(
        self, gone: np.ndarray, added: Sequence[tuple[int, Document, np.ndarray]]
    ) -> None:
        """``gone`` keys (ascending) leave; each ``(key, document, vector)`` whose metadata
        passes joins (keys only grow, so the keys stay ascending)."""
        if len(gone) and len(self.keys):
            at = np.searchsorted(self.keys, gone).clip(max=len(self.keys) - 1)
            rows = at[self.keys[at] == gone]
            self.keys = np.delete(self.keys, rows)
            if self.vectors is not None:
                self.vectors = np.delete(self.vectors, rows, axis=0)
        joining = sorted(
            ((key, vector) for key, d, vector in added if self.where.matches(d.metadata)),
            key=lambda item: item[0],
        )
        if joining:
            new_keys = np.asarray([key for key, _ in joining], dtype=np.int64)
            self.keys = np.concatenate([self.keys, new_keys])
            if self.vectors is not None:
                new_vectors = np.stack([vector for _, vector in joining]).astype(np.float32)
                self.vectors = np.concatenate([self.vectors, new_vectors])

    @property
    def vector_bytes(self) -> int:
        return 0 if self.vectors is None else int(self.vectors.nbytes)


def create_empty_index(
    folder: Path,
    model: str,
    dimension: int,
    factory: str = "Flat",
    qdrant: QdrantTarget | None = None,
) -> Manifest:
    """Write an index folder holding no documents (for a service that starts empty); with
    ``qdrant``, its vectors go to a new collection there instead of a FAISS file."""
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / MANIFEST_NAME).exists():
        raise FileExistsError(f"{folder} already holds an index")
    generation = new_generation()
    index: VectorIndex
    if qdrant is not None:
        index = QdrantIndex.create(qdrant, collection_name(generation), dimension)
    else:
        index = FaissIndex.create(dimension, factory, use_gpu=False)
        if not index.is_trained:
            raise ValueError(
                f"a {factory} index needs training data; start empty with Flat or HNSW"
            )
    docstore_name = f"docstore-{generation}.sqlite"
    with DocStore(folder / docstore_name) as store:
        store.set_meta("model", model)
    try:
        return write_snapshot(
            folder,
            index,
            model=model,
            factory=factory,
            docstore_file=docstore_name,
            max_key=0,
            generation=generation,
        )
    finally:
        index.close()


class LiveIndex(FirstStageSearch):
    """Thread-safe add / delete / search over an index folder."""

    def __init__(
        self,
        reader: IndexReader,
        *,
        filter_vector_bytes: int = DEFAULT_FILTER_VECTOR_BYTES,
        read_only: bool = False,
    ):
        if filter_vector_bytes < 0:
            raise ValueError(f"filter_vector_bytes must be at least 0, not {filter_vector_bytes}")
        self.reader = reader
        self.read_only = read_only
        """Searches only: every write raises :class:`ReadOnlyIndexError` and nothing is
        written into the folder, so several processes (serving replicas) may share it."""
        self.filter_vector_bytes = filter_vector_bytes
        """Bytes of passing vectors kept across recent filters (0: none; their exact
        searches then read the vectors from the docstore each time)."""
        self._lock = threading.RLock()
        self._unremoved: set[int] = set()
        """Hidden keys whose removal failed for want of the vector store (Qdrant down): the
        next snapshot asks again."""
        self._unsynced_from: int | None = None
        """The first key the docstore holds and the vector store (Qdrant) may lack, after a
        failed write there: the next snapshot sends them again, or keeps them after its
        ``max_key`` so that the next open catches them up."""
        self._passing: OrderedDict[Hashable, _KeptFilter] = OrderedDict()
        """Recent filters by ``MetadataFilter.key``, kept current by writes."""
        self._settle_removed_vectors()

    def _settle_removed_vectors(self) -> None:
        """Remove, where the index can, the vectors of documents deleted before this open
        that the saved vector index may still hold (a snapshot older than the delete, a
        missed Qdrant delete); the reader hides them meanwhile, and those it cannot remove
        (HNSW) for good."""
        if not self.read_only and self.reader.hidden:
            self._remove_keys(sorted(self.reader.hidden))
        hidden = len(self.reader.hidden)
        held = len(self.reader.vectors) if hidden else 0
        if hidden > HIDDEN_SHARE_WARNED * max(held, 1):
            log.warning(
                "%s: %d of the vector index's %d vectors are of deleted documents, which "
                "every search steps over; `loupe index reindex` drops them",
                self.reader.folder,
                hidden,
                held,
            )

    @classmethod
    def open(
        cls,
        folder: str | Path,
        *,
        use_gpu: bool | None = None,
        filter_vector_bytes: int = DEFAULT_FILTER_VECTOR_BYTES,
        read_only: bool = False,
        qdrant: QdrantTarget | None = None,
        approximate: ApproximateSearch | None = None,
    ) -> LiveIndex:
        """Open an index folder (``qdrant``: where its collection is, when not where its
        manifest says, and the API key; ``approximate``: how far an approximate index searches;
        see :meth:`IndexReader.open`)."""
        reader = IndexReader.open(
            folder, use_gpu=use_gpu, read_only=read_only, qdrant=qdrant, approximate=approximate
        )
        return cls(
            reader,
            filter_vector_bytes=filter_vector_bytes,
            read_only=read_only,
        )

    @classmethod
    def open_or_create(
        cls,
        folder: str | Path,
        *,
        model: str,
        dimension: int,
        factory: str = "Flat",
        filter_vector_bytes: int = DEFAULT_FILTER_VECTOR_BYTES,
        qdrant: QdrantTarget | None = None,
        approximate: ApproximateSearch | None = None,
    ) -> LiveIndex:
        """Open the index in ``folder``, or create it empty (its vectors in Qdrant when
        ``qdrant`` is given)."""
        folder = Path(folder)
        if not (folder / MANIFEST_NAME).exists():
            create_empty_index(folder, model, dimension, factory, qdrant)
        return cls.open(
            folder, filter_vector_bytes=filter_vector_bytes, qdrant=qdrant, approximate=approximate
        )

    @property
    def manifest(self) -> Manifest:
        return self.reader.manifest

    @property
    def docstore(self) -> DocStore:
        return self.reader.docstore

    def __len__(self) -> int:
        return len(self.reader.docstore)

    @property
    def token_dtype(self) -> TokenDtype:
        """How added documents' token matrices are stored: as the build-time token store
        keeps its own, else int8."""
        store = self.reader.tokens
        return store.dtype if store is not None else DEFAULT_LIVE_TOKEN_DTYPE

    def add(
        self,
        documents: Sequence[Document],
        vectors: np.ndarray,
        tokens: Sequence[np.ndarray] | None = None,
        tokens_fingerprint: str | None = None,
    ) -> list[int]:
        """Add or replace documents by id, with the re-ranker's ``(tokens_i, dim)`` matrices
        if given (stored as ``token_dtype``); returns their new keys."""
        if len(documents) != len(vectors):
            raise ValueError("one vector per document is required")
        self._require_writable()
        with self._lock, self._passing_kept_current():
            keys, replaced = self.reader.docstore.upsert(
                documents, vectors, tokens, tokens_fingerprint, self.token_dtype
            )
            self._passing_after_write(replaced, list(zip(keys, documents, vectors, strict=True)))
            if replaced:
                self._remove_keys(replaced)
            try:
                self.reader.vectors.add(
                    np.asarray(keys, dtype=np.int64), vectors, [d.metadata for d in documents]
                )
            except VectorStoreUnavailableError:
                first = min(keys) if keys else None
                if first is not None:
                    self._unsynced_from = min(self._unsynced_from or first, first)
                raise
            return keys

    def encoded_by(self, fingerprint: str) -> bool:
        """Whether this index's vectors were encoded by the encoder whose weights hash to
        ``fingerprint`` (see models.onnx_backbone.backbone_fingerprint), as its build or its
        first writer recorded; an empty writable index records it now. Unknown (an index
        written before this was recorded) counts as no."""
        recorded = self._recorded_encoder()
        if recorded is None and not self.read_only and len(self.reader.docstore) == 0:
            self.reader.docstore.set_meta(ENCODER_META, fingerprint)
            return True
        return bool(recorded == fingerprint)

    def note_writer(self, fingerprint: str) -> None:
        """Record that the encoder with ``fingerprint`` writes vectors here: where another
        one's are recorded, the index now holds both, which no encoder matches."""
        recorded = self._recorded_encoder()
        if recorded is not None and recorded != fingerprint and recorded != MIXED_ENCODERS:
            self.reader.docstore.set_meta(ENCODER_META, MIXED_ENCODERS)

    def _recorded_encoder(self) -> str | None:
        return recorded_encoder(self.reader.docstore, BUILD_CONFIG_META)

    def stored_encodings(
        self, documents: Sequence[Document], fingerprint: str | None
    ) -> dict[int, Encoding]:
        """What this index already holds for documents sent again unchanged (see
        :func:`index.reuse.unchanged_encodings`): by position in ``documents``, the stored
        vector and, with a re-ranker's ``fingerprint``, its matrix stored under it."""
        matrices: MatrixLookup | None = None
        if fingerprint is not None:

            def matrices(keys: list[int]) -> list[np.ndarray | None]:
                return self.reader.token_matrices(keys, fingerprint)

        return unchanged_encodings(self.reader.docstore, documents, matrices)

    def matrices_for_texts(self, texts: Sequence[str], fingerprint: str) -> list[np.ndarray | None]:
        """By position: the token matrix the re-ranker with ``fingerprint`` stored for a
        document whose full text is exactly that text, or None."""
        keys = self.reader.docstore.keys_for_texts(texts)
        known = [k for k in keys if k is not None]
        if not known:
            return [None] * len(texts)
        found = iter(self.reader.token_matrices(known, fingerprint))
        return [next(found) if k is not None else None for k in keys]

    def delete(self, doc_id: str) -> bool:
        """Delete a document by id; False if there was none."""
        return bool(self.delete_many([doc_id]))

    def delete_many(self, doc_ids: Sequence[str]) -> list[str]:
        """Delete documents by id (one docstore transaction); returns the ids there were."""
        self._require_writable()
        with self._lock, self._passing_kept_current():
            found = self.reader.docstore.delete_many(doc_ids)
            self._forget_keys(list(found.values()))
            return list(found)

    def delete_matching(self, where: MetadataFilter) -> int:
        """Delete every document whose metadata passes ``where`` (one docstore transaction);
        returns how many there were."""
        self._require_writable()
        with self._lock, self._passing_kept_current():
            keys = self.reader.docstore.delete_matching(where)
            self._forget_keys(keys.tolist())
            return len(keys)

    def _require_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyIndexError(
                f"{self.reader.folder} is open read-only: write through the service (or "
                "loupe index build) that owns it"
            )

    def _forget_keys(self, keys: list[int]) -> None:
        """Drop deleted keys from the kept filters and the vector index."""
        if keys:
            self._passing_after_write(keys, [])
            self._remove_keys(keys)

    def _remove_keys(self, keys: list[int]) -> None:
        """Remove the keys' vectors, or hide them: until the vector store is back (the next
        snapshot asks again), or for good where the index cannot remove (HNSW; until the
        next rebuild). The docstore's record of them is forgotten once a removal is saved."""
        vectors, hidden = self.reader.vectors, self.reader.hidden
        try:
            vectors.remove(np.asarray(keys, dtype=np.int64))
        except VectorStoreUnavailableError as exc:
            log.warning(
                "%d deleted documents stay hidden until the vector store is back: %s",
                len(keys),
                exc,
            )
            hidden.update(keys)
            self._unremoved.update(keys)
            return
        except RuntimeError:  # HNSW cannot remove
            hidden.update(keys)
            return
        hidden.difference_update(keys)
        if vectors.saves_writes:
            self.reader.docstore.forget_removed_vectors(keys)

    def search_vectors(
        self, query_vectors: np.ndarray, k: int, where: MetadataFilter | None = None
    ) -> list[list[Hit]]:
        """Top-k hits (see :meth:`IndexReader.search_vectors`); a filtered search draws only
        on documents in the docstore, so hidden (deleted) keys never take a place. The keys a
        filter passes, and their vectors where they are searched exactly, are kept and
        updated by this index's writes (reading them from the docstore is most of a filtered
        search's cost)."""
        with self._lock:
            if where is not None:
                kept = self._kept(where)
                return self.reader.search_among(
                    query_vectors, k, kept.keys, kept.vectors, where=where
                )
            return self.reader.search_vectors(query_vectors, k)

    def search_lexical(
        self, queries: Sequence[str], k: int, where: MetadataFilter | None = None
    ) -> list[list[Hit]]:
        """Top-k hits of the docstore's full-text index (current with every write)."""
        with self._lock:
            return self.reader.search_lexical(queries, k, where)

    def search_bm25(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-k hits of the BM25 index built with ``--bm25`` (static: documents added while
        serving are not in it)."""
        with self._lock:
            return self.reader.search_bm25(queries, k)

    def _kept(self, where: MetadataFilter) -> _KeptFilter:
        """``where``'s kept keys, from the cache of recent filters if there (scanned from the
        docstore if not), with their vectors where it is searched exactly."""
        kept = self._passing.get(where.key)
        if kept is None:
            kept = _KeptFilter(where, self.reader.docstore.keys_matching(where))
            self._passing[where.key] = kept
        else:
            self._passing.move_to_end(where.key)
        if (
            kept.vectors is None
            and len(kept.keys)
            and self.reader.searches_exactly(len(kept.keys))
            and self._vectors_fit(len(kept.keys))
        ):
            keys, vectors = self.reader.docstore.vectors_for_keys(kept.keys)
            order = np.argsort(keys)
            if np.array_equal(keys[order], kept.keys):  # else some have no stored vector
                kept.vectors = vectors[order]
        self._evict_passing()
        return kept

    def _passing_after_write(
        self, removed: Sequence[int], added: Sequence[tuple[int, Document, np.ndarray]]
    ) -> None:
        """Bring the kept filters up to date with a write: ``removed`` keys leave every
        filter; each ``(key, document, vector)`` added and not removed (an id given twice in
        one write) joins the filters its metadata passes. A filter grown past exact search
        drops its vectors, as does one grown past the vector budget."""
        gone_set = set(removed)
        gone = np.asarray(sorted(gone_set), dtype=np.int64)
        added = [item for item in added if item[0] not in gone_set]
        for kept in self._passing.values():
            kept.apply_write(gone, added)
            if kept.vectors is not None and not (
                self.reader.searches_exactly(len(kept.keys)) and self._vectors_fit(len(kept.keys))
            ):
                kept.vectors = None
        self._evict_passing()

    @contextmanager
    def _passing_kept_current(self) -> Iterator[None]:
        """Forget every kept filter if a write fails part-way: the docstore may hold what
        the kept keys do not."""
        try:
            yield
        except BaseException:
            self._passing.clear()
            raise

    def _evict_passing(self) -> None:
        """Drop the least recently used filters beyond the cache's limits, and the vectors of
        the least recently used beyond the vector budget (their keys stay: a rescan of the
        docstore's metadata is what the cache saves)."""
        while len(self._passing) > 1 and (
            len(self._passing) > _FILTERS_CACHED
            or sum(len(kept.keys) for kept in self._passing.values()) > _KEYS_CACHED
        ):
            self._passing.popitem(last=False)
        held = sum(kept.vector_bytes for kept in self._passing.values())
        for kept in self._passing.values():  # least recently used first
            if held <= self.filter_vector_bytes:
                break
            held -= kept.vector_bytes
            kept.vectors = None

    def _vectors_fit(self, count: int) -> bool:
        """Whether ``count`` float32 vectors fit the kept filters' vector budget at all."""
        return count * self.manifest.dimension * 4 <= self.filter_vector_bytes

    def snapshot(self) -> Manifest:
        """Persist the in-memory FAISS index (a Qdrant collection keeps itself) and a new
        manifest (atomic replace)."""
        self._require_writable()
        with self._lock:
            old = self.reader.manifest
            self.reader.docstore.checkpoint()
            max_key = self.reader.docstore.max_key()
            if self._unsynced_from is not None:
                max_key = self._resync(max_key)
            if self._unremoved:
                self._retry_removals()
            manifest = write_snapshot(
                self.reader.folder,
                self.reader.vectors,
                model=old.model,
                factory=old.factory,
                docstore_file=old.docstore_file,
                max_key=max_key,
                generation=new_generation(),
                token_store_file=old.token_store_file,
                token_store=old.token_store,
                bm25_dir=old.bm25_dir,
            )
            self.reader.manifest = manifest
            self.reader.docstore.forget_removed_vectors(keep=self.reader.hidden)
            return manifest

    def _retry_removals(self) -> None:
        """Ask the vector store again to remove what it missed; those it now removes are no
        longer hidden."""
        keys = sorted(self._unremoved)
        try:
            self.reader.vectors.remove(np.asarray(keys, dtype=np.int64))
        except VectorStoreUnavailableError as exc:
            log.warning("%d deleted documents still wait for the vector store: %s", len(keys), exc)
            return
        self._unremoved.clear()
        self.reader.hidden.difference_update(keys)

    def _resync(self, max_key: int) -> int:
        """Send the vector store the documents a failed write left out (from
        ``_unsynced_from`` on); the ``max_key`` a snapshot may record: all of it when they
        got there, else the key before them (the next open catches them up)."""
        assert self._unsynced_from is not None
        try:
            for keys, vectors in self.reader.docstore.iter_vectors(self._unsynced_from - 1):
                self.reader.vectors.add(keys, vectors, self.reader.metadata_for(keys))
        except VectorStoreUnavailableError as exc:
            log.warning(
                "documents from key %d wait for the vector store: %s", self._unsynced_from, exc
            )
            return min(max_key, self._unsynced_from - 1)
        self._unsynced_from = None
        return max_key

    def close(self) -> None:
        self.reader.close()
