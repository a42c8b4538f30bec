"""The loaded service: the engine, its model thread and one micro-batcher per kind of work."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from index.records import Document
from service.batching import BatchLimits, BatchObserver, MicroBatcher
from service.engine import (
    EmbedOutcome,
    Engine,
    RerankJob,
    RerankOutcome,
    SearchJob,
    SearchOutcome,
)
from service.generation import GenerateJob, GenerateOutcome
from service.settings import ServiceSettings

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


class Runtime:
    """Engine plus batchers; all model work runs on one thread, one merged call at a time.

    One model thread keeps CPU inference from oversubscribing cores (torch already runs each
    call on several threads) and makes index writes and searches follow a single order.
    """

    def __init__(
        self, engine: Engine, settings: ServiceSettings, observer: BatchObserver | None = None
    ):
        self.engine = engine
        self.settings = settings
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loupe-model")
        self.limits = BatchLimits(
            max_batch_size=settings.max_batch_size,
            max_batch_tokens=settings.max_batch_tokens,
            max_wait_ms=settings.max_wait_ms,
            queue_size=settings.queue_size,
        )
        self.observer = observer
        batcher = self._batcher
        self.rerank: MicroBatcher[RerankJob, RerankOutcome] = batcher("rerank", engine.rerank_many)
        self.search: MicroBatcher[SearchJob, SearchOutcome] = batcher("search", engine.search_many)
        self.embed: MicroBatcher[Sequence[str], EmbedOutcome] = batcher("embed", engine.embed_many)
        self.documents: MicroBatcher[Sequence[Document], list[int]] = batcher(
            "documents", engine.add_documents_many
        )
        self.generate: MicroBatcher[GenerateJob, GenerateOutcome] = batcher(
            "generate", engine.generate_many
        )

    def _batcher(
        self, name: str, process: Callable[[Sequence[T]], Sequence[R]]
    ) -> MicroBatcher[T, R]:
        return MicroBatcher(
            name, process, self.limits, executor=self.executor, observer=self.observer
        )

    @property
    def batchers(self) -> list[MicroBatcher[Any, Any]]:
        return [self.rerank, self.search, self.embed, self.documents, self.generate]

    async def start(self) -> None:
        for batcher in self.batchers:
            await batcher.start()

    async def run(self, func: Callable[..., R], *args: object) -> R:
        """Run ``func(*args)`` on the model thread (index writes outside a batcher)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, func, *args)

    async def stop(self) -> None:
        """Fail waiting requests, let the running batch finish, snapshot and close the index."""
        for batcher in self.batchers:
            await batcher.stop()
        try:
            await self.run(self.engine.close)
        except Exception:  # the index is closed; its last manifest stays (see Engine.close)
            log.exception("the shutdown snapshot failed")
        finally:
            self.executor.shutdown(wait=True)
