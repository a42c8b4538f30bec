"""The micro-batcher alone, and through the API: merging, limits, 429, error isolation."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.batching import BatcherClosedError, BatchLimits, MicroBatcher, QueueFullError
from tests.service.helpers import assert_error, service_state


class Recorder:
    """A batch function that records batch sizes and can fail on chosen items."""

    def __init__(self, delay: float = 0.0, fail_on: object = None):
        self.batches: list[list[int]] = []
        self.delay = delay
        self.fail_on = fail_on

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        time.sleep(self.delay)
        if self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [10 * x for x in items]


def run(coro):
    return asyncio.run(coro)


def test_concurrent_submissions_are_merged():
    recorder = Recorder(delay=0.02)

    async def main():
        batcher = MicroBatcher("t", recorder, BatchLimits(max_batch_size=8, max_wait_ms=20))
        await batcher.start()
        try:
            done = await asyncio.gather(*(batcher.submit(i) for i in range(20)))
        finally:
            await batcher.stop()
        return [d.value for d in done]

    assert run(main()) == [10 * i for i in range(20)]
    assert sum(map(len, recorder.batches)) == 20
    assert max(map(len, recorder.batches)) == 8
    assert len(recorder.batches) <= 4  # 20 jobs in batches of at most 8


def test_batch_size_one_turns_batching_off():
    recorder = Recorder()

    async def main():
        batcher = MicroBatcher("t", recorder, BatchLimits(max_batch_size=1))
        await batcher.start()
        try:
            await asyncio.gather(*(batcher.submit(i) for i in range(5)))
        finally:
            await batcher.stop()

    run(main())
    assert [len(b) for b in recorder.batches] == [1] * 5


def test_token_limit_splits_batches():
    recorder = Recorder()

    async def main():
        limits = BatchLimits(max_batch_size=100, max_batch_tokens=10, max_wait_ms=20)
        batcher = MicroBatcher("t", recorder, limits)
        await batcher.start()
        try:
            await asyncio.gather(*(batcher.submit(i, cost=4) for i in range(6)))
            await batcher.submit(99, cost=50)  # larger than the limit: runs alone
        finally:
            await batcher.stop()

    run(main())
    assert [len(b) for b in recorder.batches] == [2, 2, 2, 1]


def test_a_failing_item_fails_alone():
    recorder = Recorder(fail_on=3)

    async def main():
        batcher = MicroBatcher("t", recorder, BatchLimits(max_batch_size=8, max_wait_ms=20))
        await batcher.start()
        try:
            return await asyncio.gather(
                *(batcher.submit(i) for i in range(6)), return_exceptions=True
            )
        finally:
            await batcher.stop()

    results = run(main())
    assert isinstance(results[3], ValueError)
    assert [r.value for i, r in enumerate(results) if i != 3] == [0, 10, 20, 40, 50]


def test_full_queue_refuses_at_once_and_stop_fails_waiters():
    gate, entered = threading.Event(), threading.Event()

    def blocked(items):
        entered.set()
        gate.wait(10)
        return list(items)

    async def main():
        executor = ThreadPoolExecutor(1)
        limits = BatchLimits(max_batch_size=1, queue_size=2, max_wait_ms=0)
        batcher = MicroBatcher("t", blocked, limits, executor=executor)
        await batcher.start()
        running = asyncio.create_task(batcher.submit(0))
        while not entered.is_set():
            await asyncio.sleep(0.005)
        waiting = [asyncio.create_task(batcher.submit(i)) for i in (1, 2)]
        await asyncio.sleep(0.01)
        assert batcher.depth == 2
        started = time.perf_counter()
        with pytest.raises(QueueFullError):
            await batcher.submit(3)
        assert time.perf_counter() - started < 0.1
        await batcher.stop()  # fails the two waiting jobs
        for task in waiting:
            with pytest.raises(BatcherClosedError):
                await task
        gate.set()
        running.cancel()
        executor.shutdown()

    run(main())


# --- through the API ----------------------------------------------------------------------


class GatedReranker:
    """Wraps a re-ranker; records merged call sizes; blocks while ``gate`` is clear."""

    def __init__(self, inner):
        self.inner = inner
        self.calibration = None
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    @property
    def name(self) -> str:
        return "gated"

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        return self.score_many([query], [documents])[0]

    @property
    def calibrated(self) -> bool:
        return bool(self.inner.calibrated)

    def relevance_scores(self, query: str, scores: np.ndarray) -> np.ndarray | None:
        return self.inner.relevance_scores(query, scores)

    def score_many(self, queries, documents):
        self.calls.append(len(queries))
        self.entered.set()
        assert self.gate.wait(30)
        if any("boom" in q for q in queries):
            raise RuntimeError("bad query")
        return self.inner.score_many(queries, documents)


def wait_for_depth(client: TestClient, depth: int, timeout: float = 10.0) -> None:
    batcher = service_state(client).runtime.rerank
    deadline = time.monotonic() + timeout
    while batcher.depth < depth:
        assert time.monotonic() < deadline, f"queue depth {batcher.depth}, wanted {depth}"
        time.sleep(0.005)


def queue_behind_a_busy_worker(
    client: TestClient, reranker: GatedReranker, bodies: list[dict]
) -> list:
    """Occupy the worker, queue ``bodies`` concurrently, then release: they form one batch."""
    reranker.gate.clear()
    with ThreadPoolExecutor(len(bodies) + 1) as pool:
        blocker = pool.submit(client.post, "/v1/rerank", json={"query": "x", "documents": ["a"]})
        assert reranker.entered.wait(10)
        futures = [pool.submit(client.post, "/v1/rerank", json=body) for body in bodies]
        wait_for_depth(client, len(bodies))
        reranker.gate.set()
        assert blocker.result(10).status_code == 200
        return [f.result(10) for f in futures]


def test_concurrent_requests_share_one_forward_pass(make_client, tiny_models):
    reranker = GatedReranker(tiny_models[1])
    client = make_client(reranker=reranker, max_batch_size=16, max_wait_ms=50)
    bodies = [{"query": f"query {i}", "documents": ["a", "b", f"doc {i}"]} for i in range(6)]
    responses = queue_behind_a_busy_worker(client, reranker, bodies)
    assert all(r.status_code == 200 for r in responses)
    assert reranker.calls == [1, 6]  # the blocker alone, then the six merged
    for response, body in zip(responses, bodies, strict=True):
        expected = tiny_models[1].score(body["query"], body["documents"])
        got = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
        np.testing.assert_allclose([got[i] for i in range(3)], expected, atol=1e-5)
    assert 'loupe_batch_requests_bucket{le="8.0",queue="rerank"} 2.0' in client.get("/metrics").text


def test_a_bad_request_in_a_batch_does_not_fail_the_others(make_client, tiny_models):
    reranker = GatedReranker(tiny_models[1])
    client = make_client(reranker=reranker, max_batch_size=16, max_wait_ms=50)
    bodies = [{"query": "boom" if i == 2 else f"q{i}", "documents": ["a", "b"]} for i in range(5)]
    responses = queue_behind_a_busy_worker(client, reranker, bodies)
    assert [r.status_code for r in responses] == [200, 200, 500, 200, 200]
    assert_error(responses[2], 500, "internal_error")
    assert reranker.calls == [1, 5, 1, 1, 1, 1, 1]  # the merged call failed; retried alone


def test_full_queue_answers_429_with_retry_after(make_client, tiny_models):
    reranker = GatedReranker(tiny_models[1])
    client = make_client(reranker=reranker, max_batch_size=1, queue_size=1)
    reranker.gate.clear()
    body = {"query": "q", "documents": ["a"]}
    with ThreadPoolExecutor(2) as pool:
        busy = pool.submit(client.post, "/v1/rerank", json=body)  # being scored
        assert reranker.entered.wait(10)
        queued = pool.submit(client.post, "/v1/rerank", json=body)  # waits in the queue
        wait_for_depth(client, 1)
        started = time.perf_counter()
        refused = client.post("/v1/rerank", json=body)
        assert time.perf_counter() - started < 2  # refused at once, not after the wait
        assert_error(refused, 429, "queue_full")
        assert refused.headers["Retry-After"] == "1"
        reranker.gate.set()
        assert busy.result(10).status_code == 200
        assert queued.result(10).status_code == 200
    assert 'loupe_queue_rejected_total{queue="rerank"} 1.0' in client.get("/metrics").text


def test_stop_answers_jobs_being_gathered_or_run():
    gate, entered = threading.Event(), threading.Event()

    def blocked(items):
        entered.set()
        gate.wait(10)
        return list(items)

    async def main():
        executor = ThreadPoolExecutor(1)
        batcher = MicroBatcher("t", blocked, BatchLimits(max_wait_ms=10_000), executor=executor)
        await batcher.start()
        gathering = asyncio.create_task(batcher.submit(1))  # waits for company for 10 s
        await asyncio.sleep(0.05)
        await asyncio.wait_for(batcher.stop(), 1)
        with pytest.raises(BatcherClosedError):
            await asyncio.wait_for(gathering, 1)
        gate.set()
        executor.shutdown()

    run(main())
