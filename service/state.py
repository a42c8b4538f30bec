"""The app's state: settings, metrics, and the runtime once the lifespan has loaded it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Literal

from fastapi import FastAPI

from service.engine import Engine
from service.metrics import ServiceMetrics
from service.runtime import Runtime
from service.settings import ServiceSettings

log = logging.getLogger(__name__)

Status = Literal["loading", "ok", "failed"]
LOAD_RETRY_S = 5.0
"""How long loading waits before trying again when the vector store (Qdrant) is not reachable
yet, as when it starts beside the service."""
EngineLoader = Callable[[ServiceSettings], Engine]


class ServiceState:
    """What the routers read from ``app.state.loupe``.

    The lifespan starts loading in a worker thread and returns at once, so the server
    answers ``/health`` (200) and ``/ready`` (503) while models load or a corpus is indexed.
    """

    def __init__(self, settings: ServiceSettings, metrics: ServiceMetrics, loader: EngineLoader):
        self.settings = settings
        self.metrics = metrics
        self.loader = loader
        self.status: Status = "loading"
        self.error: str | None = None
        self.runtime: Runtime | None = None
        self._loading: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        self._loading = asyncio.create_task(self._load(), name="loupe-load")
        try:
            yield
        finally:
            if not self._loading.done():
                log.warning("shutting down while still loading")
                self._loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loading
            if self._watching is not None:
                self._watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._watching
            runtime, self.runtime = self.runtime, None
            if runtime is not None:
                await runtime.stop()

    async def wait_loaded(self) -> None:
        """Wait until loading has finished (successfully or not)."""
        if self._loading is not None:
            await asyncio.shield(self._loading)

    async def _load(self) -> None:
        from index.errors import VectorStoreUnavailableError

        while True:
            try:
                engine = await asyncio.to_thread(self.loader, self.settings)
                break
            except VectorStoreUnavailableError as exc:  # Qdrant not up yet: wait for it
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("%s; trying again in %.0f s", exc, LOAD_RETRY_S)
                await asyncio.sleep(LOAD_RETRY_S)
            except Exception as exc:
                log.exception("loading failed")
                self.status, self.error = "failed", f"{type(exc).__name__}: {exc}"
                return
        self.error = None
        runtime = Runtime(engine, self.settings, self.metrics)
        await runtime.start()
        self.runtime, self.status = runtime, "ok"
        self.metrics.documents.set(engine.document_count())
        self.metrics.caches.caches = engine.caches()
        self.metrics.writes.counts = engine.written
        self.metrics.serving(engine.index_generation)
        if engine.read_only and self.settings.index_reload_s > 0:
            self._watching = asyncio.create_task(self._watch_index(runtime), name="loupe-reload")

    async def _watch_index(self, runtime: Runtime) -> None:
        """Serve a rebuilt index once its manifest replaces the one served: opened in a worker
        thread, swapped in on the model thread between batches. A generation that fails to
        open is reported once and not tried again; the current index stays. An unreadable
        manifest or an unreachable vector store (Qdrant) is tried again at the next check."""
        from index.errors import VectorStoreUnavailableError
        from service.loading import open_rebuilt_index, rebuilt_generation

        engine, folder = runtime.engine, self.settings.index
        failed: str | None = None  # a generation that failed to open
        warned: str | None = None  # the last transient problem logged

        def warn_once(message: str) -> None:
            nonlocal warned
            if message != warned:
                log.warning(message)
            warned = message

        while True:
            await asyncio.sleep(self.settings.index_reload_s)
            try:
                generation = await asyncio.to_thread(rebuilt_generation, self.settings, engine)
            except Exception as exc:  # no manifest, or an unreadable one: try again later
                warn_once(f"index {folder} not reloaded: {exc}")
                continue
            if generation is None or generation == failed:
                continue
            old = engine.index_generation
            try:
                index = await asyncio.to_thread(open_rebuilt_index, self.settings, engine)
                try:
                    await runtime.run(engine.replace_index, index)
                except BaseException:
                    index.close()
                    raise
            except VectorStoreUnavailableError as exc:  # transient: this generation again later
                warn_once(f"index {folder} generation {generation} waits: {exc}")
                continue
            except Exception as exc:
                log.warning("index %s generation %s not served: %s", folder, generation, exc)
                self.metrics.reload("failed")
                failed = generation
                continue
            failed = warned = None
            self.metrics.serving(generation)
            self.metrics.reload("served")
            log.info(
                "serving index %s generation %s (was %s), %d documents",
                folder,
                generation,
                old,
                engine.document_count(),
            )
