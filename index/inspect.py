"""``loupe index info``: what an index folder holds, read from its manifest and files without
loading the vector index (so it is instant, and safe beside a service using the folder)."""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from index.docstore import DocStore
from index.manifest import Manifest, sha256_file
from index.qdrant_index import QdrantIndex, QdrantTarget
from index.token_store import TokenStore


@dataclass(frozen=True)
class IndexInfo:
    """An index folder's manifest and what its files hold (sizes in bytes)."""

    folder: str
    generation: str
    created: str
    """When the manifest was written (UTC, ISO 8601)."""
    model: str
    dimension: int
    documents: int
    """Documents in the docstore now (a service may have added some since the snapshot)."""
    snapshot_documents: int
    """Vectors the manifest's snapshot holds."""
    vectors: str
    """``faiss <factory>`` or ``qdrant <collection> at <location>``."""
    vectors_bytes: int | None
    """The FAISS file's size (None for Qdrant, which holds the vectors)."""
    docstore_bytes: int
    hidden_vectors: int
    """Vectors of deleted documents the saved vector index may still hold (hidden in searches;
    an HNSW index keeps them until ``loupe index reindex``)."""
    full_text: bool
    finds_texts: bool
    """Whether ``/v1/rerank`` can find a sent text among the documents, to score it from its
    stored matrix (docstores written before gain it on their first writable open)."""
    token_store: dict[str, Any] | None
    """The token store's re-ranker, dtype, dimension, windows, tokens and sizes; None without."""
    bm25: bool
    checksum_ok: bool | None = None
    """Whether the FAISS file matches the manifest's checksum (None: not checked)."""
    qdrant_points: int | None = None
    """Points the Qdrant collection holds (checked with ``verify``; None otherwise)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The summary as ``name: value`` lines."""
        rows = [
            ("folder", self.folder),
            ("generation", f"{self.generation} (written {self.created})"),
            ("encoder", f"{self.model} ({self.dimension}-d)"),
            ("documents", f"{self.documents} ({self.snapshot_documents} in the vector snapshot)"),
            ("vectors", self.vectors + _size(self.vectors_bytes)),
            ("docstore", "SQLite" + _size(self.docstore_bytes)),
            ("hidden vectors", f"{self.hidden_vectors} (of deleted documents)"),
            ("full-text index", "yes" if self.full_text else "no"),
            (
                "texts findable",
                "yes" if self.finds_texts else "no (open the index once writable to add)",
            ),
            ("bm25 index", "yes" if self.bm25 else "no"),
        ]
        if self.token_store is None:
            rows.append(("token store", "none (candidates are re-encoded)"))
        else:
            t = self.token_store
            rows.append(
                (
                    "token store",
                    f"re-ranker {t['reranker_fingerprint']}, {t['dtype']}, {t['dim']}-d, "
                    f"up to {t['windows']} windows of {t['window_tokens']} tokens; "
                    f"{t['documents']} documents, {t['tokens']} tokens, "
                    f"{t['bytes_per_document']:.0f} bytes a document" + _size(t["bytes"]),
                )
            )
        if self.checksum_ok is not None:
            rows.append(("checksum", "ok" if self.checksum_ok else "MISMATCH"))
        if self.qdrant_points is not None:
            rows.append(("qdrant points", str(self.qdrant_points)))
        return [f"{name}: {value}" for name, value in rows]


def index_info(
    folder: Path, *, verify: bool = False, qdrant: QdrantTarget | None = None
) -> IndexInfo:
    """Describe the index in ``folder``; ``verify``: also check the FAISS file's checksum
    (reads the whole file), or count the Qdrant collection's points (connects to Qdrant,
    at ``qdrant`` if given, else where the manifest says)."""
    manifest = Manifest.load(folder)
    docstore_path = folder / manifest.docstore_file
    with DocStore(docstore_path, read_only=True) as docstore:
        documents = len(docstore)
        full_text = docstore.has_lexical
        finds_texts = docstore.finds_texts
        hidden_vectors = len(docstore.removed_vector_keys())
    # the database with its write-ahead log and shared-memory files
    docstore_bytes = sum(p.stat().st_size for p in folder.glob(f"{manifest.docstore_file}*"))
    vectors_bytes: int | None = None
    checksum_ok: bool | None = None
    qdrant_points: int | None = None
    if manifest.vectors_backend == "qdrant":
        vectors = f"qdrant {manifest.qdrant_collection} at {manifest.qdrant_location}"
        if verify and manifest.qdrant_collection and manifest.qdrant_location:
            target = qdrant or QdrantTarget(manifest.qdrant_location)
            collection = QdrantIndex.open(target, manifest.qdrant_collection)
            try:
                qdrant_points = len(collection)
            finally:
                collection.close()
    else:
        vectors = f"faiss {manifest.factory}"
        path = folder / manifest.vectors_file
        vectors_bytes = path.stat().st_size
        if verify:
            checksum_ok = sha256_file(path) == manifest.vectors_sha256
    return IndexInfo(
        folder=str(folder),
        generation=manifest.generation,
        created=_utc(manifest.created_at),
        model=manifest.model,
        dimension=manifest.dimension,
        documents=documents,
        snapshot_documents=manifest.count,
        vectors=vectors,
        vectors_bytes=vectors_bytes,
        docstore_bytes=docstore_bytes,
        hidden_vectors=hidden_vectors,
        full_text=full_text,
        finds_texts=finds_texts,
        token_store=_token_store_info(folder, manifest),
        bm25=manifest.bm25_dir is not None,
        checksum_ok=checksum_ok,
        qdrant_points=qdrant_points,
    )


def _token_store_info(folder: Path, manifest: Manifest) -> dict[str, Any] | None:
    if manifest.token_store_file is None:
        return None
    path = folder / manifest.token_store_file
    store = TokenStore(path)
    size = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    meta = store.meta
    return {
        "reranker_fingerprint": meta.get("reranker_fingerprint"),
        "dtype": store.dtype.value,
        "dim": store.dim,
        "windows": meta.get("doc_windows", 1),
        "window_tokens": meta.get("d_len"),
        "documents": len(store),
        "tokens": int(meta.get("tokens", 0)),
        "bytes_per_document": store.bytes_per_document(),
        "bytes": size,
    }


def _utc(timestamp: float) -> str:
    """
    >>> _utc(0.0)
    '1970-01-01T00:00:00Z'
    """
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _size(size: int | None) -> str:
    """
    >>> _size(3_500_000), _size(None)
    (', 3.5 MB', '')
    """
    return "" if size is None else f", {size / 1e6:.1f} MB"
