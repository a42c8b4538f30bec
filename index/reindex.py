"""``loupe index reindex``: rebuild an index's first-stage vector index from the vectors its
docstore holds, encoding nothing. For a lost or corrupt vectors file, a new FAISS factory
(Flat to HNSW32 or IVF as a corpus grows), dropping the deletes an HNSW index can only hide,
or moving the vectors into Qdrant or back into a FAISS file. The docstore, token store and
BM25 index stay as they are; the new manifest names a new generation, so read-only
replicas pick it up as they pick up a rebuild."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from index.builder import (
    drop_replaced_collection,
    index_stored_vectors,
    upload_stored_vectors,
    write_snapshot,
)
from index.docstore import DocStore
from index.errors import IndexCorruptError
from index.faiss_index import FaissIndex
from index.manifest import Manifest, new_generation
from index.qdrant_index import QdrantTarget, collection_name
from index.vector_index import VectorIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reindexed:
    previous: Manifest
    manifest: Manifest
    seconds: float


def reindex(
    folder: Path,
    *,
    factory: str | None = None,
    qdrant: QdrantTarget | None = None,
    show_progress: bool = False,
) -> Reindexed:
    """Rebuild the vector index of the index in ``folder`` from its docstore's vectors.

    With ``factory``, into a FAISS file of that factory. Otherwise into a new Qdrant
    collection, at ``qdrant`` (its manifest's location if None), where the vectors are in
    Qdrant now or ``qdrant`` is given; else into a FAISS file of the index's own factory. A
    replaced Qdrant collection is deleted where ``qdrant`` (or the manifest's location)
    reaches it. A factory FAISS cannot build, or an unreachable Qdrant, fails before
    anything is read.
    """
    started = time.perf_counter()
    previous = Manifest.load(folder)
    docstore_path = folder / previous.docstore_file
    if not docstore_path.is_file():
        raise IndexCorruptError(f"{folder}: manifest names {docstore_path.name}, which is missing")
    old_location = (
        QdrantTarget(previous.qdrant_location) if previous.qdrant_location is not None else None
    )
    to_qdrant = factory is None and (qdrant is not None or previous.vectors_backend == "qdrant")
    destination = qdrant or old_location
    if to_qdrant:
        if destination is None:
            raise IndexCorruptError(f"{folder}: its manifest names no Qdrant location")
        destination.connect().close()
    chosen = factory or (previous.factory if previous.vectors_backend == "faiss" else "Flat")
    if not to_qdrant:
        FaissIndex.create(previous.dimension, chosen, use_gpu=False).close()
    generation = new_generation()
    with DocStore(docstore_path) as store:
        index: VectorIndex
        if to_qdrant:
            assert destination is not None
            index = upload_stored_vectors(
                store,
                previous.dimension,
                destination,
                collection_name(generation),
                show_progress=show_progress,
            )
        else:
            index = index_stored_vectors(store, previous.dimension, chosen, store.all_keys())
        try:
            store.checkpoint()
            manifest = write_snapshot(
                folder,
                index,
                model=previous.model,
                factory=chosen,
                docstore_file=previous.docstore_file,
                max_key=store.max_key(),
                generation=generation,
                token_store_file=previous.token_store_file,
                token_store=previous.token_store,
                bm25_dir=previous.bm25_dir,
            )
        finally:
            index.close()
        store.forget_removed_vectors()  # the new vectors hold only the stored documents
    drop_replaced_collection(previous, manifest, qdrant or old_location)
    return Reindexed(previous, manifest, time.perf_counter() - started)
