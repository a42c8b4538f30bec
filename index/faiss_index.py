"""FAISS backend of :class:`VectorIndex`, built from a factory string (Flat, HNSW32, IVF..,PQ..)."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index.vector_index import HNSW_EF_SEARCH, VectorIndex, as_float32_rows, hnsw_ef, no_hits

log = logging.getLogger(__name__)


def gpu_count() -> int:
    """GPUs faiss can use (0 with faiss-cpu)."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get else 0


def ivf_lists(factory: str) -> int:
    """Number of inverted lists an IVF factory string asks for (0 if not IVF).

    >>> ivf_lists("IVF1024,PQ32"), ivf_lists("HNSW32")
    (1024, 0)
    """
    match = re.match(r"^(?:OPQ\d+(?:_\d+)?,)?IVF(\d+)", factory)
    return int(match.group(1)) if match else 0


FAISS_DEFAULT_EF_SEARCH = 16
FAISS_DEFAULT_NPROBE = 1


def default_nprobe(lists: int) -> int:
    """Inverted lists an IVF search visits where the index has FAISS's default of one: twice
    the square root of their number, at least 32 (all of them if fewer). On SciFact with
    IVF256,Flat it finds 89 % of the exact top 100 (FAISS's 1: 17 %; 16: 76 %; 64: 97 %),
    and a re-ranker reads that top 100.

    >>> default_nprobe(256), default_nprobe(4096), default_nprobe(16)
    (32, 128, 16)
    """
    return min(lists, max(32, round(2 * math.sqrt(lists))))


class FaissIndex(VectorIndex):
    """Inner-product FAISS index with docstore keys as its ids. An approximate index searches
    with Loupe's defaults where it has FAISS's (see :data:`HNSW_EF_SEARCH` and
    :func:`default_nprobe`); :meth:`set_search_params` sets others, which its file keeps."""

    def __init__(self, index: faiss.Index, *, use_gpu: bool | None = None):
        self._cpu_index = index
        self._search_index = index
        self._use_gpu = gpu_count() > 0 if use_gpu is None else use_gpu
        self._raise_faiss_defaults()
        self._to_gpu()

    def _raise_faiss_defaults(self) -> None:
        ivf = faiss.try_extract_index_ivf(self._cpu_index)
        if ivf is not None and ivf.nprobe == FAISS_DEFAULT_NPROBE and ivf.nlist > 1:
            ivf.nprobe = default_nprobe(int(ivf.nlist))
        hnsw = self._hnsw()
        if hnsw is not None and hnsw.efSearch == FAISS_DEFAULT_EF_SEARCH:
            hnsw.efSearch = HNSW_EF_SEARCH

    def _hnsw(self) -> Any:
        """The HNSW graph's parameters, or None for an index that is not HNSW."""
        inner = _inner_index(self._cpu_index)
        return inner.hnsw if hasattr(inner, "hnsw") else None

    @classmethod
    def create(
        cls, dimension: int, factory: str = "Flat", *, use_gpu: bool | None = None
    ) -> FaissIndex:
        try:
            base = faiss.index_factory(dimension, factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise ValueError(f"invalid FAISS factory string {factory!r}: {exc}") from exc
        # IVF indexes carry ids themselves; the others need an id map around them.
        index = base if ivf_lists(factory) else faiss.IndexIDMap2(base)
        return cls(index, use_gpu=use_gpu)

    @classmethod
    def load(cls, path: Path, *, use_gpu: bool | None = None) -> FaissIndex:
        return cls(faiss.read_index(str(path)), use_gpu=use_gpu)

    def _to_gpu(self) -> None:
        if not self._use_gpu or gpu_count() == 0:
            self._search_index = self._cpu_index
            return
        try:
            self._search_index = faiss.index_cpu_to_all_gpus(self._cpu_index)
        except RuntimeError as exc:  # e.g. HNSW has no GPU version
            log.info("FAISS index stays on the CPU: %s", exc)
            self._search_index = self._cpu_index

    @property
    def dimension(self) -> int:
        return int(self._cpu_index.d)

    @property
    def on_gpu(self) -> bool:
        return self._search_index is not self._cpu_index

    def __len__(self) -> int:
        return int(self._cpu_index.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self._cpu_index.is_trained)

    @property
    def training_size(self) -> int:
        """Vectors that training draws on at most (a random sample of more): 256 per IVF
        list, and no fewer than 10,000."""
        return max(256 * max(ivf_lists_of(self._cpu_index), 1), 10_000)

    def train(self, vectors: np.ndarray, *, seed: int = 0) -> None:
        """Train an IVF/PQ index on a sample of vectors (a no-op for Flat and HNSW)."""
        if self.is_trained:
            return
        vectors = as_float32_rows(vectors, self.dimension)
        lists = ivf_lists_of(self._cpu_index)
        if lists and len(vectors) < lists:
            raise ValueError(
                f"IVF with {lists} lists needs at least {lists} training vectors,"
                f" got {len(vectors)}"
            )
        sample = vectors
        limit = self.training_size
        if len(vectors) > limit:
            rng = np.random.default_rng(seed)
            sample = vectors[rng.choice(len(vectors), limit, replace=False)]
        self._cpu_index.train(sample)
        self._to_gpu()

    def add(
        self,
        keys: np.ndarray,
        vectors: np.ndarray,
        metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Add the vectors (FAISS keeps no metadata: filters go through the docstore)."""
        if not self.is_trained:
            raise RuntimeError("train the index before adding vectors")
        self._cpu_index.add_with_ids(
            as_float32_rows(vectors, self.dimension), np.asarray(keys, dtype=np.int64)
        )
        self._to_gpu()

    def remove(self, keys: np.ndarray) -> None:
        selector = faiss.IDSelectorBatch(np.asarray(keys, dtype=np.int64))
        self._cpu_index.remove_ids(selector)
        self._to_gpu()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k < 1:
            raise ValueError("k must be at least 1")
        queries = as_float32_rows(np.atleast_2d(queries), self.dimension)
        if len(self) == 0:
            return no_hits(len(queries), k)
        hnsw = self._hnsw()
        if hnsw is None:
            scores, keys = self._search_index.search(queries, k)
            return scores, keys
        params = _hnsw_params(hnsw_ef(int(hnsw.efSearch), k))
        scores, keys = self._search_index.search(queries, k, params=params)
        return scores, keys

    @property
    def exhaustive(self) -> bool:
        """Whether a search scores every vector (a flat index): exact, filtered or not."""
        return isinstance(_inner_index(self._cpu_index), faiss.IndexFlat)

    def search_among(
        self, queries: np.ndarray, k: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ``(scores, keys)``, each ``(q, k)``, among the ``allowed`` keys only (padded
        with -inf and -1). Runs on the CPU index; an IVF index keeps its ``nprobe``, HNSW its
        ``efSearch`` (at least 2 k), so an approximate index may find fewer than k when few
        keys are allowed.
        """
        if k < 1:
            raise ValueError("k must be at least 1")
        queries = as_float32_rows(np.atleast_2d(queries), self.dimension)
        if len(self) == 0 or len(allowed) == 0:
            return no_hits(len(queries), k)
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
        lists = faiss.try_extract_index_ivf(self._cpu_index)
        hnsw = self._hnsw()
        params: faiss.SearchParameters
        if lists is not None:
            ivf = faiss.SearchParametersIVF()
            ivf.nprobe = int(lists.nprobe)  # the parameters' own default is 1
            params = ivf
        elif hnsw is not None:
            params = _hnsw_params(hnsw_ef(int(hnsw.efSearch), k))
        else:
            params = faiss.SearchParameters()
        params.sel = selector
        scores, keys = self._cpu_index.search(queries, k, params=params)
        return scores, keys

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        ivf = faiss.try_extract_index_ivf(self._cpu_index)
        if nprobe is not None and ivf is not None:
            ivf.nprobe = nprobe
        hnsw = self._hnsw()
        if ef_search is not None and hnsw is not None:
            hnsw.efSearch = ef_search
        self._to_gpu()

    def search_params(self) -> dict[str, int]:
        """The approximate index's search parameters (none for a flat index)."""
        ivf = faiss.try_extract_index_ivf(self._cpu_index)
        hnsw = self._hnsw()
        params = {"nprobe": int(ivf.nprobe)} if ivf is not None else {}
        return params | ({"ef_search": int(hnsw.efSearch)} if hnsw is not None else {})

    def save(self, path: Path) -> None:
        faiss.write_index(self._cpu_index, str(path))

    def serialized_bytes(self) -> int:
        """Size of the index as written to disk."""
        return int(faiss.serialize_index(self._cpu_index).nbytes)


def _hnsw_params(ef_search: int) -> faiss.SearchParameters:
    params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # not in faiss's stubs
    params.efSearch = ef_search
    return params


def _inner_index(index: faiss.Index) -> faiss.Index:
    """The index itself, or the one an id map wraps."""
    inner = faiss.downcast_index(index)
    if isinstance(inner, faiss.IndexIDMap):
        inner = faiss.downcast_index(inner.index)
    return inner


def ivf_lists_of(index: faiss.Index) -> int:
    return int(getattr(_inner_index(index), "nlist", 0))
