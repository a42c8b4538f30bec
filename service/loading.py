"""Loading the engine from settings: encoder, re-ranker, index (and a first corpus).

Imports of torch, transformers and faiss happen inside :func:`load_engine`, so importing the
service costs little; the app calls it once, in its lifespan, in a worker thread.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from service.engine import Engine
from service.generation import QueryGenerator
from service.settings import ServiceSettings

if TYPE_CHECKING:
    from index.live import LiveIndex
    from index.qdrant_index import QdrantTarget
    from models.array_cache import ArrayCache

log = logging.getLogger(__name__)


def load_generator(settings: ServiceSettings) -> QueryGenerator | None:
    """The GMLM named by ``settings.generator``, or None."""
    if not settings.generator:
        return None
    from models.device import pick_device
    from models.gmlm import GenerativeMaskedLM

    model = GenerativeMaskedLM.load(settings.generator, device=pick_device(settings.device))
    return QueryGenerator(model, name=settings.generator)


def load_query_cache(settings: ServiceSettings) -> ArrayCache | None:
    """The engine's query cache, ``settings.query_cache_mb`` large (None: off)."""
    from models.array_cache import ArrayCache

    return ArrayCache(settings.query_cache_mb * 2**20) if settings.query_cache_mb > 0 else None


def qdrant_target(settings: ServiceSettings) -> QdrantTarget | None:
    """Where the settings put the index's Qdrant collection (see
    :func:`index.qdrant_index.target_for`; None: as the manifest says, or FAISS for a new
    index)."""
    from index.qdrant_index import target_for

    key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    return target_for(settings.index, settings.qdrant_url, key)


def open_index(settings: ServiceSettings, model: str, dimension: int) -> LiveIndex:
    """The settings' index folder: read-only with ``settings.read_only``, else opened, or
    created empty for ``model``'s ``dimension``-d vectors."""
    from index.live import LiveIndex

    if settings.read_only:
        return open_read_only(settings)
    return LiveIndex.open_or_create(
        settings.index,
        model=model,
        dimension=dimension,
        factory=settings.index_factory,
        filter_vector_bytes=settings.filter_cache_mb * 2**20,
        qdrant=qdrant_target(settings),
        approximate=settings.approximate_search(),
    )


def open_read_only(settings: ServiceSettings) -> LiveIndex:
    """The index folder opened for searching only (``settings.read_only``)."""
    from index.live import LiveIndex
    from index.manifest import MANIFEST_NAME

    if settings.corpus is not None:
        raise ValueError("a read-only service cannot index a corpus: drop corpus or read_only")
    if not (settings.index / MANIFEST_NAME).is_file():
        raise FileNotFoundError(
            f"{settings.index} holds no index; a read-only service serves one built before "
            "(loupe index build, or a writable loupe serve)"
        )
    return LiveIndex.open(
        settings.index,
        read_only=True,
        filter_vector_bytes=settings.filter_cache_mb * 2**20,
        qdrant=qdrant_target(settings),
        approximate=settings.approximate_search(),
    )


def rebuilt_generation(settings: ServiceSettings, engine: Engine) -> str | None:
    """The generation the index folder's manifest names when it is not the one the engine
    serves (a build or a snapshot replaced it), else None."""
    from index.manifest import Manifest

    generation = Manifest.load(settings.index).generation
    return generation if generation != engine.index_generation else None


def open_rebuilt_index(settings: ServiceSettings, engine: Engine) -> LiveIndex:
    """The index folder opened afresh, read-only, to replace the one the engine serves."""
    from index.rerank import token_store_warning

    index = open_read_only(settings)
    mismatch = token_store_warning(engine.reranker, index.reader)
    if mismatch is not None:
        log.warning("index %s: %s", settings.index, mismatch)
    return index


def load_engine(settings: ServiceSettings) -> Engine:
    """Load the models and open (or create) the index named by ``settings``.

    When ``settings.corpus`` is set and the index holds no documents, the corpus is read
    with :func:`index.readers.read_corpus`, encoded and added before the engine is returned.
    """
    from index.readers import read_corpus
    from index.rerank import token_store_warning
    from models.array_cache import ArrayCache
    from models.encoder import EncoderConfig, TextEncoder
    from models.late_reranker import LateInteractionReranker
    from models.registry import load_reranker, reranker_encoders
    from models.runtime import RuntimeConfig, apply_runtimes

    started = time.perf_counter()
    if settings.torch_threads is not None:
        import torch

        torch.set_num_threads(settings.torch_threads)
    encoder = TextEncoder(EncoderConfig(model=settings.encoder, device=settings.device))
    reranker = load_reranker(settings.reranker, device=settings.device, share_encoder=encoder)
    apply_runtimes(
        [encoder, *reranker_encoders(reranker)],
        RuntimeConfig(settings.runtime, settings.onnx_cache, settings.onnx_dir),
    )
    if isinstance(reranker, LateInteractionReranker) and settings.document_cache_mb > 0:
        reranker.cache = ArrayCache(settings.document_cache_mb * 2**20)
    index = open_index(settings, encoder.model_name, encoder.dim)
    try:
        if index.manifest.model != encoder.model_name:
            log.warning(
                "index %s was built with %s; the encoder is %s",
                settings.index,
                index.manifest.model,
                encoder.model_name,
            )
        mismatch = token_store_warning(reranker, index.reader)
        if mismatch is not None:
            log.warning("index %s: %s", settings.index, mismatch)
        engine = Engine(
            encoder,
            reranker,
            index,
            snapshot_every=settings.snapshot_every,
            generator=load_generator(settings),
            query_cache=load_query_cache(settings),
        )
        if settings.corpus is not None and engine.document_count() == 0:
            log.info("indexing corpus %s into %s", settings.corpus, settings.index)
            count = engine.index_corpus(read_corpus(settings.corpus))
            log.info("indexed %d documents from %s", count, settings.corpus)
    except BaseException:
        index.close()
        raise
    log.info(
        "loaded encoder %s (%s), re-ranker %s and %d documents in %.1fs",
        engine.encoder_name,
        encoder.runtime,
        engine.reranker_name,
        engine.document_count(),
        time.perf_counter() - started,
    )
    return engine
