"""Prometheus metrics of one app: requests and latencies per route, batches, queue depth,
and the engine's caches.

Each app has its own registry, so several apps (tests) never share counters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from models.array_cache import ArrayCache

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServiceMetrics:
    """The service's metrics; also the batchers' :class:`service.batching.BatchObserver`."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "loupe_requests",
            "HTTP requests answered, by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "loupe_request_seconds",
            "HTTP request latency, by route and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "loupe_batch_requests",
            "Requests merged into one model call, by queue.",
            ["queue"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "loupe_batch_seconds",
            "Duration of one merged model call, by queue.",
            ["queue"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue = Gauge(
            "loupe_queue_depth",
            "Requests waiting for the model, by queue.",
            ["queue"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "loupe_queue_rejected",
            "Requests refused with 429 because the queue was full, by queue.",
            ["queue"],
            registry=self.registry,
        )
        self.documents = Gauge(
            "loupe_index_documents", "Documents in the index.", registry=self.registry
        )
        self.generation = Info(
            "loupe_index", "The index generation served.", registry=self.registry
        )
        self.reloads = Counter(
            "loupe_index_reloads",
            "Rebuilt indexes a read-only service served (served) or failed to open (failed).",
            ["outcome"],
            registry=self.registry,
        )
        self.caches = CacheCollector()
        self.registry.register(self.caches)
        self.writes = WriteCollector()
        self.registry.register(self.writes)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def queue_depth(self, queue: str, depth: int) -> None:
        self.queue.labels(queue).set(depth)

    def batch_done(self, queue: str, requests: int, seconds: float) -> None:
        self.batch_requests.labels(queue).observe(requests)
        self.batch_seconds.labels(queue).observe(seconds)

    def rejected(self, queue: str) -> None:
        self.rejections.labels(queue).inc()

    def serving(self, generation: str) -> None:
        """The index generation now served."""
        self.generation.info({"generation": generation})

    def reload(self, outcome: str) -> None:
        """A rebuilt index was served (``served``) or failed to open (``failed``)."""
        self.reloads.labels(outcome).inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class WriteCollector(Collector):
    """Documents written, by whether they were encoded or kept their stored encodings (sent
    again unchanged), read when scraped."""

    def __init__(self) -> None:
        self.counts: Mapping[str, int] = {}
        """Documents by ``encoded`` / ``kept``; the engine's own, set once it is loaded."""

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "loupe_documents_written",
            "Documents written, by how they got their encodings: encoded, or kept from the "
            "index (sent again unchanged).",
            labels=["encodings"],
        )
        for how, count in self.counts.items():
            family.add_metric([how], count)
        yield family


class CacheCollector(Collector):
    """Hits, misses, bytes and entries of the engine's caches, read when scraped."""

    def __init__(self) -> None:
        self.caches: Mapping[str, ArrayCache] = {}
        """The caches by name (``query``, ``document``); set once the engine is loaded."""

    def collect(self) -> Iterator[Metric]:
        label = ["cache"]
        hits = CounterMetricFamily("loupe_cache_hits", "Cache lookups that found.", labels=label)
        misses = CounterMetricFamily(
            "loupe_cache_misses", "Cache lookups that missed.", labels=label
        )
        size = GaugeMetricFamily("loupe_cache_bytes", "Bytes of arrays held.", labels=label)
        limit = GaugeMetricFamily("loupe_cache_max_bytes", "The cache's bound.", labels=label)
        entries = GaugeMetricFamily("loupe_cache_entries", "Arrays held.", labels=label)
        for name, cache in self.caches.items():
            hits.add_metric([name], cache.hits)
            misses.add_metric([name], cache.misses)
            size.add_metric([name], cache.nbytes)
            limit.add_metric([name], cache.max_bytes)
            entries.add_metric([name], len(cache))
        yield from (hits, misses, size, limit, entries)
