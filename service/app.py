"""The app factory: ``create_app(settings)`` builds the FastAPI app; nothing loads at import.

Run it with ``loupe serve``, or ``uvicorn --factory service.app:create_app_from_env``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from service.auth import ApiKeyMiddleware
from service.errors import install_error_handlers
from service.loading import load_engine
from service.metrics import ServiceMetrics
from service.middleware import BodyLimitMiddleware, ObserveMiddleware
from service.routers import ALL as ROUTERS
from service.settings import ServiceSettings
from service.state import EngineLoader, ServiceState

DESCRIPTION = """
Retrieval and re-ranking: a dual encoder with a FAISS index finds candidates; a re-ranker
scores them. `/v1/rerank` (also `/v2/rerank`) is compatible with Cohere's v2 and Jina's
rerank APIs, `/rerank` and `/embed` with Hugging Face text-embeddings-inference's. Errors are
`{"error": {"type", "message"}}`.
"""


def _version() -> str:
    try:
        return version("loupe")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0.0.0"


def create_app(
    settings: ServiceSettings | None = None, *, engine_loader: EngineLoader | None = None
) -> FastAPI:
    """Build the app; its lifespan loads the engine once, in the background.

    Args:
        settings: service settings (default: read from ``LOUPE_*`` variables).
        engine_loader: builds the engine from the settings (default:
            :func:`service.loading.load_engine`); tests pass small models here.
    """
    settings = settings or ServiceSettings()
    metrics = ServiceMetrics()
    state = ServiceState(settings, metrics, engine_loader or load_engine)
    app = FastAPI(
        title="Loupe",
        version=_version(),
        description=DESCRIPTION,
        lifespan=state.lifespan,
        docs_url="/docs",
    )
    app.state.loupe = state
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    # Added last = outermost: metrics see every answer, auth runs before the body is read.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    api_keys, read_api_keys = settings.api_keys(), settings.read_api_keys()
    if api_keys or read_api_keys:
        app.add_middleware(ApiKeyMiddleware, api_keys=api_keys, read_api_keys=read_api_keys)
    app.add_middleware(ObserveMiddleware, metrics=metrics)
    origins = settings.cors_origin_list()
    if origins:
        # outermost: a browser's preflight carries no API key, and every answer (a 401 too)
        # needs the headers for the page to read it
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["Retry-After", "X-Request-ID"],
            max_age=600,
        )
    return app


def create_app_from_env() -> FastAPI:
    """``create_app`` with settings from the environment (for ``uvicorn --factory``)."""
    return create_app(ServiceSettings())
