"""Micro-batching: concurrent requests merged into one model call, off the event loop.

A :class:`MicroBatcher` owns a bounded asyncio queue and one worker task. The worker takes
the first waiting job, then gathers more for at most ``max_wait_ms`` (up to
``max_batch_size`` jobs and ``max_batch_tokens`` estimated tokens), and runs the batch
function in an executor thread. A full queue refuses at once (:class:`QueueFullError`), so
callers answer 429 instead of hanging. If the batch function fails, each job of the batch
is run alone, so one bad request fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class QueueFullError(RuntimeError):
    """The batch queue holds ``queue_size`` jobs already; retry later."""


class BatcherClosedError(RuntimeError):
    """The batcher was stopped (the service is shutting down)."""


class BatchObserver(Protocol):
    """Receives batching measurements (see :class:`service.metrics.ServiceMetrics`)."""

    def queue_depth(self, queue: str, depth: int) -> None: ...

    def batch_done(self, queue: str, requests: int, seconds: float) -> None: ...

    def rejected(self, queue: str) -> None: ...


class _NoObserver:
    def queue_depth(self, queue: str, depth: int) -> None:
        pass

    def batch_done(self, queue: str, requests: int, seconds: float) -> None:
        pass

    def rejected(self, queue: str) -> None:
        pass


@dataclass(frozen=True)
class BatchLimits:
    """How jobs are merged.

    Attributes:
        max_batch_size: jobs per call; 1 turns batching off.
        max_batch_tokens: estimated tokens per call (a single larger job still runs alone).
        max_wait_ms: how long to wait for more jobs once one has arrived (0: take only what
            is queued; jobs that arrive while the model runs still merge into the next call).
        queue_size: jobs that may wait; one more is refused.
    """

    max_batch_size: int = 32
    max_batch_tokens: int = 32_768
    max_wait_ms: float = 0.0
    queue_size: int = 256


@dataclass
class _Job(Generic[T, R]):
    item: T
    cost: int
    future: asyncio.Future[R]
    enqueued: float = field(default_factory=time.perf_counter)
    queue_seconds: float = 0.0


@dataclass(frozen=True)
class Done(Generic[R]):
    """A job's result with the seconds it spent waiting in the queue."""

    value: R
    queue_seconds: float


class MicroBatcher(Generic[T, R]):
    """Merges submitted items into calls of ``process(items) -> results`` (same order).

    Example:
        >>> async def demo():
        ...     batcher = MicroBatcher("double", lambda xs: [2 * x for x in xs])
        ...     await batcher.start()
        ...     try:
        ...         done = await asyncio.gather(*(batcher.submit(i) for i in range(3)))
        ...     finally:
        ...         await batcher.stop()
        ...     return [d.value for d in done]
        >>> asyncio.run(demo())
        [0, 2, 4]
    """

    def __init__(
        self,
        name: str,
        process: Callable[[Sequence[T]], Sequence[R]],
        limits: BatchLimits | None = None,
        *,
        executor: Executor | None = None,
        observer: BatchObserver | None = None,
    ):
        self.name = name
        self.process = process
        self.limits = limits or BatchLimits()
        self.executor = executor
        self.observer: BatchObserver = observer or _NoObserver()
        self._queue: asyncio.Queue[_Job[T, R]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._carry: _Job[T, R] | None = None
        self._inflight: list[_Job[T, R]] = []
        self.batches_run = 0

    @property
    def depth(self) -> int:
        """Jobs waiting (not counting the batch being run)."""
        return self._queue.qsize() if self._queue is not None else 0

    async def start(self) -> None:
        if self._worker is None:
            self._queue = asyncio.Queue(maxsize=self.limits.queue_size)
            self._worker = asyncio.create_task(self._run(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        """Stop the worker; fail waiting (and in-flight) jobs with :class:`BatcherClosedError`.

        A batch already in the executor runs to its end there; its callers are answered at
        once rather than after the call.
        """
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        pending = [*self._inflight, *([self._carry] if self._carry else [])]
        self._inflight, self._carry = [], None
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for job in pending:
            if not job.future.done():
                job.future.set_exception(BatcherClosedError(f"{self.name} batcher stopped"))

    async def submit(self, item: T, cost: int = 1) -> Done[R]:
        """Queue ``item`` and wait for its result; raises :class:`QueueFullError` at once."""
        if self._queue is None or self._worker is None:
            raise BatcherClosedError(f"{self.name} batcher is not running")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        job = _Job(item, max(int(cost), 1), future)
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.observer.rejected(self.name)
            raise QueueFullError(
                f"the {self.name} queue is full ({self.limits.queue_size} waiting)"
            ) from None
        self.observer.queue_depth(self.name, self._queue.qsize())
        value = await future
        return Done(value, job.queue_seconds)

    async def _next_batch(self) -> list[_Job[T, R]]:
        assert self._queue is not None
        first = self._carry or await self._queue.get()
        self._carry = None
        batch, tokens = [first], first.cost
        self._inflight = batch  # so that ``stop`` answers jobs taken but not yet run
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.max_wait_ms / 1000
        while len(batch) < self.limits.max_batch_size:
            try:
                if self._queue.empty():
                    timeout = deadline - loop.time()
                    if timeout <= 0:
                        break
                    job = await asyncio.wait_for(self._queue.get(), timeout)
                else:
                    job = self._queue.get_nowait()
            except TimeoutError:
                break
            if tokens + job.cost > self.limits.max_batch_tokens:
                self._carry = job  # first in the next batch
                break
            batch.append(job)
            tokens += job.cost
        self.observer.queue_depth(self.name, self._queue.qsize())
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            live = [job for job in batch if not job.future.done()]  # skip cancelled callers
            if not live:
                continue
            self._inflight = live
            try:
                await self._run_batch(live)
            except Exception as exc:  # the executor itself failed: fail this batch, go on
                log.exception("%s batcher: batch of %d failed", self.name, len(live))
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(exc)
            finally:
                self._inflight = []

    async def _run_batch(self, live: list[_Job[T, R]]) -> None:
        started = time.perf_counter()
        for job in live:
            job.queue_seconds = started - job.enqueued
        items = [job.item for job in live]
        loop = asyncio.get_running_loop()
        outcomes = await loop.run_in_executor(self.executor, self._process_safely, items)
        self.batches_run += 1
        self.observer.batch_done(self.name, len(live), time.perf_counter() - started)
        for job, outcome in zip(live, outcomes, strict=True):
            if job.future.done():
                continue
            if isinstance(outcome, _Failure):
                job.future.set_exception(outcome.error)
            else:
                job.future.set_result(outcome)

    def _process_safely(self, items: list[T]) -> list[R | _Failure]:
        """Run the batch; if it fails, run each item alone so only the bad ones fail."""
        try:
            results = list(self.process(items))
            if len(results) != len(items):
                raise RuntimeError(f"{self.name}: {len(results)} results for {len(items)} items")
            return list(results)
        except Exception as exc:
            if len(items) == 1:
                return [_Failure(exc)]
            log.warning(
                "%s batch of %d failed (%s); retrying one by one", self.name, len(items), exc
            )
        outcomes: list[R | _Failure] = []
        for item in items:
            try:
                outcomes.append(self.process([item])[0])
            except Exception as exc:
                outcomes.append(_Failure(exc))
        return outcomes


@dataclass(frozen=True)
class _Failure:
    error: BaseException
