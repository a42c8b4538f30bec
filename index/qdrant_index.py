"""Qdrant backend of :class:`VectorIndex`: the first stage's vectors in a Qdrant collection.

For a corpus that outgrows one machine's memory, or a first stage that several serving
replicas share: the docstore, the token store and the manifest stay in the index folder; the
vectors live in Qdrant (a server or cluster, by URL), one collection per index build,
searched by inner product over its HNSW graph. A local folder (or ``:memory:``) instead of a
URL runs qdrant-client's embedded mode, which holds the vectors in the process and searches
them exactly: for trials and tests, one process at a time. Needs ``pip install
'loupe[qdrant]'`` (qdrant-client).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from index.errors import VectorStoreUnavailableError
from index.metadata_filter import MetadataFilter
from index.vector_index import HNSW_EF_SEARCH, VectorIndex, as_float32_rows, hnsw_ef, no_hits

if TYPE_CHECKING:
    from qdrant_client import QdrantClient, models

UPSERT_BATCH = 1024
"""Points per upsert request."""
EXACT_FLOAT_INTEGERS = 2**53
"""Numbers a filter compares as Qdrant ranges do (as doubles) without losing precision."""


@dataclass(frozen=True)
class QdrantTarget:
    """Where a Qdrant collection lives: ``http(s)://host:port`` of a Qdrant server, or a local
    folder (or ``:memory:``) for qdrant-client's embedded mode."""

    location: str
    api_key: str | None = field(default=None, repr=False)

    @property
    def is_server(self) -> bool:
        """
        >>> QdrantTarget("http://qdrant:6333").is_server, QdrantTarget("/tmp/q").is_server
        (True, False)
        """
        return self.location.startswith(("http://", "https://"))

    def connect(self) -> QdrantClient:
        """A client, checked by one call: VectorStoreUnavailableError (naming the location)
        when Qdrant cannot be reached, refuses the key, or the embedded folder is in use."""
        try:
            from qdrant_client import QdrantClient
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "the Qdrant backend needs qdrant-client: pip install 'loupe[qdrant]'"
            ) from exc
        try:
            if self.is_server:
                client = QdrantClient(url=self.location, api_key=self.api_key)
            elif self.location == ":memory:":
                client = QdrantClient(location=":memory:")
            else:
                client = QdrantClient(path=str(Path(self.location)))
            client.get_collections()
        except Exception as exc:  # connection refused, timeout, 401/403, folder locked
            raise VectorStoreUnavailableError(
                f"cannot use Qdrant at {self.location}: {type(exc).__name__}: {exc}"
            ) from exc
        return client


def target_for(folder: Path | None, url: str | None, api_key: str | None) -> QdrantTarget | None:
    """The Qdrant a command's options point at: ``url``; or, with only an API key, the
    location the manifest of the index in ``folder`` names; None when neither is given (an
    index is then reached where its manifest says, without a key).
    """
    from index.manifest import MANIFEST_NAME, Manifest

    if url is not None:
        return QdrantTarget(url, api_key)
    if api_key is None or folder is None or not (folder / MANIFEST_NAME).is_file():
        return None
    location = Manifest.load(folder).qdrant_location
    return QdrantTarget(location, api_key) if location is not None else None


def collection_name(generation: str) -> str:
    """The collection an index build of this generation writes.

    >>> collection_name("20261128T020924-eea21e")
    'loupe-20261128T020924-eea21e'
    """
    return f"loupe-{generation}"


def qdrant_filter(where: MetadataFilter) -> models.Filter | None:
    """``where`` as a Qdrant filter over the points' payloads (each document's metadata), or
    None where one cannot say it: a field name Qdrant would read as a path (``.``, ``[``) or
    an integer beyond a double's precision, or a range over strings. Strings and booleans
    match by value, numbers by a range of one value (so ``1`` matches ``1.0``, as in the
    docstore), and numeric ranges by Qdrant's range. Qdrant also matches
    a value inside a list, which the docstore does not: callers check the hits.

    >>> f = qdrant_filter(MetadataFilter.from_mapping({"lang": ["en", "de"], "year": 2024}))
    >>> [len(field.should) for field in f.must]
    [2, 1]
    >>> qdrant_filter(MetadataFilter.from_mapping({"a.b": 1})) is None
    True
    >>> qdrant_filter(MetadataFilter.from_mapping({"year": {"gte": 2020}})).must[0].range.gte
    2020.0
    >>> qdrant_filter(MetadataFilter.from_mapping({"date": {"gte": "2024-01-01"}})) is None
    True
    """
    from qdrant_client import models

    fields: list[models.Condition] = []
    for name, values in where.fields:
        if any(c in name for c in ".[]"):
            return None
        options: list[models.Condition] = []
        for value in values:
            if isinstance(value, bool | str):
                options.append(
                    models.FieldCondition(key=name, match=models.MatchValue(value=value))
                )
            elif abs(value) >= EXACT_FLOAT_INTEGERS:
                return None
            else:
                number = float(value)
                options.append(
                    models.FieldCondition(key=name, range=models.Range(gte=number, lte=number))
                )
        fields.append(models.Filter(should=options))
    for name, value_range in where.ranges:
        if any(c in name for c in ".[]") or value_range.on_strings:
            return None  # Qdrant orders numbers (and datetimes), not strings
        bounds = {op: float(value) for op, value in value_range.bounds}
        if any(abs(value) >= EXACT_FLOAT_INTEGERS for value in bounds.values()):
            return None
        fields.append(models.FieldCondition(key=name, range=models.Range(**bounds)))
    return models.Filter(must=fields)


class QdrantIndex(VectorIndex):
    """Inner-product search over one Qdrant collection, with docstore keys as point ids and
    each document's metadata as the point's payload."""

    keeps_metadata = True
    saves_writes = True

    def __init__(self, client: QdrantClient, target: QdrantTarget, collection: str):
        self._client = client
        self.target = target
        self.collection = collection
        self._hnsw_ef: int | None = None
        vectors = client.get_collection(collection).config.params.vectors
        size = getattr(vectors, "size", None)
        if size is None:
            raise ValueError(f"Qdrant collection {collection} has no single unnamed vector")
        self._dimension = int(size)

    @classmethod
    def create(cls, target: QdrantTarget, collection: str, dimension: int) -> QdrantIndex:
        """A new, empty collection for ``dimension``-d vectors (one left by an interrupted
        build of the same name is replaced)."""
        from qdrant_client import models

        client = target.connect()
        if client.collection_exists(collection):
            client.delete_collection(collection)
        client.create_collection(
            collection,
            vectors_config=models.VectorParams(size=dimension, distance=models.Distance.DOT),
        )
        return cls(client, target, collection)

    @classmethod
    def open(cls, target: QdrantTarget, collection: str) -> QdrantIndex:
        """An existing collection; ValueError when there is none."""
        client = target.connect()
        if not client.collection_exists(collection):
            client.close()
            raise ValueError(f"Qdrant at {target.location} has no collection {collection}")
        return cls(client, target, collection)

    @property
    def dimension(self) -> int:
        return self._dimension

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """Qdrant's own failures (down, timed out, refusing) as VectorStoreUnavailableError."""
        try:
            yield
        except Exception as exc:
            raise VectorStoreUnavailableError(
                f"Qdrant at {self.target.location} failed to {what}: {type(exc).__name__}: {exc}"
            ) from exc

    def __len__(self) -> int:
        with self._calling("count points"):
            return int(self._client.count(self.collection, exact=True).count)

    def add(
        self,
        keys: np.ndarray,
        vectors: np.ndarray,
        metadata: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Upsert ``vectors (n, dim)`` under ``keys (n,)``, each with its document's
        ``metadata`` as payload (none given: an empty payload); a key already there is
        replaced, payload and all."""
        from qdrant_client import models

        keys = np.asarray(keys, dtype=np.int64)
        vectors = as_float32_rows(vectors, self.dimension)
        if len(keys) != len(vectors) or (metadata is not None and len(metadata) != len(keys)):
            raise ValueError(f"{len(keys)} keys for {len(vectors)} vectors and their metadata")
        for start in range(0, len(keys), UPSERT_BATCH):
            batch = slice(start, start + UPSERT_BATCH)
            payloads = [dict(m) for m in metadata[batch]] if metadata is not None else None
            points = models.Batch(
                ids=[int(k) for k in keys[batch]],
                vectors=vectors[batch].tolist(),
                payloads=payloads,
            )
            with self._calling("store points"):
                self._client.upsert(self.collection, points=points, wait=True)

    def remove(self, keys: np.ndarray) -> None:
        from qdrant_client import models

        ids: list[int | str] = [int(k) for k in np.asarray(keys, dtype=np.int64)]
        if ids:
            with self._calling("delete points"):
                self._client.delete(
                    self.collection, points_selector=models.PointIdsList(points=ids), wait=True
                )

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._query(queries, k, None)

    def search_among(
        self, queries: np.ndarray, k: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ``(scores, keys)``, each ``(q, k)``, among the ``allowed`` keys only (padded
        with -inf and -1); Qdrant filters by point id while it walks its graph (every id
        goes with each request: :meth:`search_where` is lighter where it applies)."""
        from qdrant_client import models

        has_id: list[int | str] = [int(key) for key in np.asarray(allowed, dtype=np.int64)]
        if not has_id:
            _require_k(k)
            return no_hits(len(np.atleast_2d(queries)), k)
        return self._query(queries, k, models.Filter(must=[models.HasIdCondition(has_id=has_id)]))

    def search_where(
        self, queries: np.ndarray, k: int, where: MetadataFilter
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Top-k ``(scores, keys)``, each ``(q, k)``, among the points whose payload passes
        :func:`qdrant_filter` of ``where``; None where it cannot be said in Qdrant's terms.
        A document whose metadata holds a list may pass here and not in the docstore."""
        condition = qdrant_filter(where)
        return None if condition is None else self._query(queries, k, condition)

    def _query(
        self, queries: np.ndarray, k: int, where: models.Filter | None
    ) -> tuple[np.ndarray, np.ndarray]:
        from qdrant_client import models

        _require_k(k)
        queries = as_float32_rows(np.atleast_2d(queries), self.dimension)
        scores, keys = no_hits(len(queries), k)
        params = (  # the embedded mode searches exactly and warns of any params
            models.SearchParams(hnsw_ef=hnsw_ef(self._hnsw_ef or HNSW_EF_SEARCH, k))
            if self.target.is_server
            else None
        )
        requests = [
            models.QueryRequest(query=q.tolist(), limit=k, filter=where, params=params)
            for q in queries
        ]
        with self._calling("search"):
            answers = self._client.query_batch_points(self.collection, requests=requests)
        for row, answer in enumerate(answers):
            for column, point in enumerate(answer.points[:k]):
                scores[row, column] = point.score
                keys[row, column] = int(point.id)
        return scores, keys

    @property
    def exhaustive(self) -> bool:
        """False: a Qdrant server searches an approximate HNSW graph (small filtered searches
        are scored exactly from the docstore instead, see ``IndexReader.search_among``)."""
        return False

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """HNSW's ``ef`` at search time (``nprobe`` has no meaning here)."""
        if ef_search is not None:
            self._hnsw_ef = ef_search

    def save(self, path: Path) -> None:
        """Nothing to write: Qdrant keeps the collection itself."""

    def close(self) -> None:
        self._client.close()


def drop_collections(target: QdrantTarget, collections: Iterable[str]) -> list[str]:
    """Delete collections of earlier builds (those that exist); returns those deleted."""
    client = target.connect()
    dropped: list[str] = []
    try:
        for name in collections:
            if client.collection_exists(name):
                client.delete_collection(name)
                dropped.append(name)
    finally:
        client.close()
    return dropped


def _require_k(k: int) -> None:
    if k < 1:
        raise ValueError("k must be at least 1")
