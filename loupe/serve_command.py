"""``loupe serve`` and the remote half of ``loupe search --url``.

The command only fills :class:`service.settings.ServiceSettings` and calls the server. Every
option also reads ``LOUPE_<OPTION>``; options left out fall back to the settings' own
defaults (and the variables the settings read themselves, such as ``LOUPE_QUEUE_SIZE``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loupe.cli_common import RuntimeOption
from service.settings import ServiceSettings

if TYPE_CHECKING:
    from index.metadata_filter import MetadataFilter


def _env(name: str) -> str:
    return f"LOUPE_{name.upper()}"


def _default(field: str) -> str:
    """The settings default of ``field``, shown in ``--help``."""
    value = ServiceSettings.model_fields[field].default
    return "none" if value is None else str(value)


def _option(field: str, help_text: str, **kwargs: Any) -> Any:
    return typer.Option(help=help_text, envvar=_env(field), show_default=_default(field), **kwargs)


def serve(
    host: Annotated[str | None, _option("host", "interface to listen on")] = None,
    port: Annotated[int | None, _option("port", "TCP port", min=0, max=65535)] = None,
    index: Annotated[
        Path | None, _option("index", "index folder; created empty if it holds no index")
    ] = None,
    corpus: Annotated[
        Path | None,
        _option("corpus", "corpus (tsv, jsonl, BEIR folder) indexed when the index is empty"),
    ] = None,
    read_only: Annotated[
        bool | None,
        _option(
            "read_only",
            "serve an existing index without writing into its folder (replicas; writes: 403)",
        ),
    ] = None,
    encoder: Annotated[
        str | None, _option("encoder", "first-stage encoder: 'default', folder or HF name")
    ] = None,
    reranker: Annotated[
        str | None,
        _option(
            "reranker",
            "re-ranker: 'default', 'maxsim[:MODEL]', a re-ranker folder, or a cross-encoder "
            "or encoder folder or HF name",
        ),
    ] = None,
    generator: Annotated[
        str | None, _option("generator", "GMLM folder served at /v1/generate (none: 503)")
    ] = None,
    api_key: Annotated[
        str | None, _option("api_key", "require `Authorization: Bearer KEY` on /v1 and /v2")
    ] = None,
    read_api_key: Annotated[
        str | None,
        _option(
            "read_api_key",
            "keys (comma-separated) that may search, re-rank and embed but not change "
            "documents (403): for web pages",
        ),
    ] = None,
    cors_origins: Annotated[
        str | None,
        _option(
            "cors_origins",
            "origins whose web pages may call the API from a browser (comma-separated, or *)",
        ),
    ] = None,
    device: Annotated[
        str | None, _option("device", "torch device (cuda, cpu); default: CUDA if present")
    ] = None,
    qdrant_url: Annotated[
        str | None,
        _option(
            "qdrant_url",
            "Qdrant URL (or local folder) for the first stage's vectors: where a new index "
            "creates its collection, and where an index's collection is reached",
        ),
    ] = None,
    qdrant_api_key: Annotated[str | None, _option("qdrant_api_key", "Qdrant API key")] = None,
    nprobe: Annotated[
        int | None, _option("nprobe", "IVF lists a search visits (default: the index's)", min=1)
    ] = None,
    ef_search: Annotated[
        int | None,
        _option("ef_search", "HNSW candidate list (default: the index's; at least 2 k)", min=1),
    ] = None,
    torch_threads: Annotated[
        int | None, _option("torch_threads", "CPU threads for torch (default: one per core)", min=1)
    ] = None,
    runtime: Annotated[
        RuntimeOption | None,
        _option("runtime", "encoder runtime: auto (measure both at start-up), torch or onnx"),
    ] = None,
    onnx_dir: Annotated[
        Path | None, _option("onnx_dir", "a `loupe export onnx` folder to take graphs from")
    ] = None,
    onnx_cache: Annotated[
        Path | None, _option("onnx_cache", "where ONNX graphs are exported on first use")
    ] = None,
    max_documents: Annotated[
        int | None, _option("max_documents", "documents per request (413 above)", min=1)
    ] = None,
    max_text_chars: Annotated[
        int | None, _option("max_text_chars", "characters per text (413 above)", min=1)
    ] = None,
    max_body_bytes: Annotated[
        int | None, _option("max_body_bytes", "request body bytes (413 above)", min=1024)
    ] = None,
    max_batch_size: Annotated[
        int | None,
        _option("max_batch_size", "requests merged per model call; 1 turns batching off", min=1),
    ] = None,
    max_batch_tokens: Annotated[
        int | None, _option("max_batch_tokens", "estimated tokens per model call", min=1)
    ] = None,
    max_wait_ms: Annotated[
        float | None, _option("max_wait_ms", "longest wait to fill a batch", min=0)
    ] = None,
    queue_size: Annotated[
        int | None, _option("queue_size", "waiting requests per queue (429 above)", min=1)
    ] = None,
    log_level: Annotated[
        str, typer.Option(help="uvicorn log level", envvar=_env("log_level"))
    ] = "info",
) -> None:
    """Serve the HTTP API (rerank, search, documents, embed, generate, health, metrics; docs
    at /docs)."""
    from service.server import run_server

    given: dict[str, Any] = {
        "host": host,
        "port": port,
        "index": index,
        "corpus": corpus,
        "read_only": read_only,
        "encoder": encoder,
        "reranker": reranker,
        "generator": generator,
        "api_key": api_key,
        "read_api_key": read_api_key,
        "cors_origins": cors_origins,
        "device": device,
        "qdrant_url": qdrant_url,
        "qdrant_api_key": qdrant_api_key,
        "nprobe": nprobe,
        "ef_search": ef_search,
        "torch_threads": torch_threads,
        "runtime": runtime.value if runtime is not None else None,
        "onnx_dir": onnx_dir,
        "onnx_cache": onnx_cache,
        "max_documents": max_documents,
        "max_text_chars": max_text_chars,
        "max_body_bytes": max_body_bytes,
        "max_batch_size": max_batch_size,
        "max_batch_tokens": max_batch_tokens,
        "max_wait_ms": max_wait_ms,
        "queue_size": queue_size,
    }
    settings = ServiceSettings(**{k: v for k, v in given.items() if v is not None})
    if settings.read_only and settings.corpus is not None:
        raise typer.BadParameter("a read-only service cannot index a corpus", param_hint="--corpus")
    if settings.corpus is not None and not settings.corpus.exists():
        raise typer.BadParameter(f"no such corpus: {settings.corpus}", param_hint="--corpus")
    run_server(settings, log_level=log_level)


def search_remote(
    url: str,
    query: str,
    k: int = 10,
    *,
    api_key: str | None = None,
    rerank: bool = True,
    where: MetadataFilter | None = None,
    first_stage: str = "dense",
) -> list[str]:
    """Search a running service; returns the lines ``loupe search`` prints (with the
    probability of relevance ``P=...`` where the service's re-ranker is calibrated).

    The API key defaults to ``LOUPE_API_KEY``.
    """
    from service.client import LoupeClient

    key = api_key if api_key is not None else os.environ.get(_env("api_key")) or None
    with LoupeClient(url, api_key=key) as client:
        answer = client.search(
            query,
            top_n=k,
            candidates=max(k, 100),
            rerank=rerank,
            filter=where.as_mapping() if where is not None else None,
            first_stage=first_stage,
        )
    from loupe.search_command import hit_line

    return [
        hit_line(
            rank,
            hit.score,
            hit.id,
            hit.relevance_score,
            f"{hit.title} {hit.text}" if hit.title else hit.text or "",
        )
        for rank, hit in enumerate(answer.results, start=1)
    ]


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``loupe`` command line."""
    app.command("serve")(serve)
