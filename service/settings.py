"""Service settings: one typed object, filled from ``LOUPE_*`` variables or ``loupe serve``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from index.vector_index import ApproximateSearch


class ServiceSettings(BaseSettings):
    """Everything the service reads at start-up; each field also reads ``LOUPE_<FIELD>``.

    >>> ServiceSettings(port=9000, max_batch_size=1).batching_enabled
    False
    """

    model_config = SettingsConfigDict(
        env_prefix="LOUPE_", extra="ignore", frozen=True, env_ignore_empty=True
    )

    host: str = "127.0.0.1"
    """Interface to listen on (``0.0.0.0`` inside a container)."""
    port: int = Field(8000, ge=0, le=65535)
    """TCP port to listen on."""
    index: Path = Path("data/index")
    """Index folder; created empty on first start when it holds no index."""
    corpus: Path | None = None
    """Corpus (tsv, jsonl or BEIR folder) indexed on start when the index is empty."""
    read_only: bool = False
    """Serve an existing index without writing into its folder: document writes answer 403,
    and several replicas may serve one folder, on a read-only mount too (deploy/README.md)."""
    encoder: str = "default"
    """First-stage encoder: ``default`` (packaged MiniLM), a folder or a HF name."""
    reranker: str = "default"
    """Re-ranker, loaded with ``models.registry.load_reranker``."""
    generator: str | None = None
    """GMLM folder (``loupe train gmlm``) served at ``/v1/generate``; none: that answers 503."""
    device: str | None = None
    """torch device; default: CUDA when present."""
    torch_threads: int | None = Field(None, ge=1)
    """CPU threads torch may use (default: torch's choice, one per core); ONNX Runtime
    uses as many."""
    runtime: Literal["auto", "torch", "onnx"] = "auto"
    """Where the encoders run: ``auto`` measures PyTorch and ONNX Runtime at start-up on a
    small calibration batch and keeps the faster; ``torch``; ``onnx`` (CUDA provider when
    onnxruntime-gpu and a GPU are present)."""
    onnx_dir: Path | None = None
    """A ``loupe export onnx`` folder whose graph is used for the encoder it came from."""
    onnx_cache: Path | None = None
    """Where ONNX graphs are exported on first use (default: ``~/.cache/loupe``)."""
    qdrant_url: str | None = None
    """Keep the first stage's vectors in Qdrant: a new index creates its collection at this
    URL (or local folder, qdrant-client's embedded mode); an index whose manifest names a
    collection is reached here instead of at the manifest's location."""
    qdrant_api_key: SecretStr | None = None
    """API key of the Qdrant server."""
    index_factory: str = "Flat"
    """FAISS factory for a new empty index (Flat or HNSW32; IVF needs training data)."""
    nprobe: int | None = Field(None, ge=1)
    """IVF lists a search visits (default: the index file's, else about twice the square
    root of the lists' number)."""
    ef_search: int | None = Field(None, ge=1)
    """HNSW's candidate list, FAISS's efSearch or Qdrant's hnsw_ef (default: the index
    file's, else 128); a search explores at least twice the hits it asks for."""
    api_key: SecretStr | None = None
    """When set, ``/v1`` and ``/v2`` routes need ``Authorization: Bearer <key>``. Several
    keys separated by commas are each accepted: to rotate a key, serve the old and the new
    one, move the clients over, then drop the old."""

    read_api_key: SecretStr | None = None
    """Keys (comma-separated) that may search, re-rank, embed, generate and read documents,
    but not add, replace or delete them (403): for web pages and search front ends. Setting
    only these turns authentication on with no key that may write."""

    cors_origins: str | None = None
    """Origins (``https://app.example.com``, comma-separated, or ``*``) whose web pages may
    call the API from a browser; none: no CORS headers, as for any server-side client."""

    max_documents: int = Field(1000, ge=1)
    """Documents (or inputs) per request; more give 413."""
    max_text_chars: int = Field(32_768, ge=1)
    """Characters per text; longer give 413 unless ``max_tokens_per_doc`` truncates."""
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    """Request body size; larger give 413."""
    max_top_n: int = Field(1000, ge=1)
    """Largest ``top_n`` and ``candidates`` of ``/v1/search``."""

    max_batch_size: int = Field(32, ge=1)
    """Requests merged into one model call; 1 turns micro-batching off."""
    max_batch_tokens: int = Field(32_768, ge=1)
    """Estimated tokens (characters / 4) merged into one model call."""
    max_wait_ms: float = Field(0.0, ge=0)
    """How long the batcher waits for more requests once one has arrived. 0 (the default)
    merges what queued while the model was busy, which under load is the whole batch; a
    wait only delays a lone request (reports/service.md, "Waiting for company")."""
    queue_size: int = Field(256, ge=1)
    """Requests waiting per queue; beyond it the answer is 429 with Retry-After."""
    request_timeout_s: float = Field(120.0, gt=0)
    """Longest a request waits for its model work before a 504."""
    index_reload_s: float = Field(30.0, ge=0)
    """A read-only service reads the index folder's manifest this often and, once a build
    (or the writing service's snapshot) has replaced it, serves the new index without a
    restart; 0: never."""
    snapshot_every: int = Field(1000, ge=1)
    """Persist the FAISS index after this many document writes (and on shutdown)."""
    document_cache_mb: int = Field(256, ge=0)
    """Token matrices of documents /v1/rerank has seen, kept in an LRU of this size (0: off)."""
    filter_cache_mb: int = Field(256, ge=0)
    """Vectors of recent filters that an approximate index searches exactly (those passing
    up to 20,000 documents), kept in memory up to this size in all, so those searches read
    no vectors from the docstore (0: off)."""
    query_cache_mb: int = Field(32, ge=0)
    """Encodings of queries /v1/search and /v1/rerank have seen (first-stage vector and
    late-interaction re-ranker matrix, with the default models at most 18 KB each, 5 KB for
    a 7-token query), kept in an LRU of this size (0: off)."""

    @property
    def batching_enabled(self) -> bool:
        return self.max_batch_size > 1

    def api_key_value(self) -> str | None:
        """The API key as plain text, or None when auth is off (empty counts as off)."""
        if self.api_key is None:
            return None
        return self.api_key.get_secret_value() or None

    def approximate_search(self) -> ApproximateSearch:
        """How far an approximate index searches (None: as its file says)."""
        return ApproximateSearch(nprobe=self.nprobe, ef_search=self.ef_search)

    def cors_origin_list(self) -> tuple[str, ...]:
        """The origins allowed to call from a browser.

        >>> settings = ServiceSettings(cors_origins="https://a.example, http://localhost:3000/,")
        >>> settings.cors_origin_list()
        ('https://a.example', 'http://localhost:3000')
        >>> ServiceSettings().cors_origin_list()
        ()
        """
        value = self.cors_origins or ""
        return tuple(origin.strip().rstrip("/") for origin in value.split(",") if origin.strip())

    def api_keys(self) -> tuple[str, ...]:
        """The keys that may call every protected route (none, nor read keys: auth is off).

        >>> ServiceSettings(api_key=" old-key, new-key ,").api_keys()
        ('old-key', 'new-key')
        """
        return _keys(self.api_key)

    def read_api_keys(self) -> tuple[str, ...]:
        """The keys that may call every protected route but document writes.

        >>> ServiceSettings(read_api_key="page-key").read_api_keys()
        ('page-key',)
        """
        return _keys(self.read_api_key)


def _keys(secret: SecretStr | None) -> tuple[str, ...]:
    """Comma-separated keys, stripped, empty ones dropped."""
    value = secret.get_secret_value() if secret is not None else ""
    return tuple(key.strip() for key in value.split(",") if key.strip())
