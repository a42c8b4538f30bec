"""Running the app under uvicorn (what ``loupe serve`` calls)."""

from __future__ import annotations

import logging

from service.settings import ServiceSettings

log = logging.getLogger(__name__)


def run_server(settings: ServiceSettings, *, log_level: str = "info") -> None:
    """Serve until interrupted; one process (the index is written in place).

    Scale out with several replicas behind a load balancer, each with its own index copy,
    rather than uvicorn workers sharing one index folder.
    """
    import uvicorn

    from service.app import create_app

    logging.getLogger("service").setLevel(log_level.upper())
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level.lower(),
        lifespan="on",
        timeout_graceful_shutdown=30,
        proxy_headers=True,
    )
    log.info("serving on http://%s:%d", settings.host, settings.port)
    uvicorn.Server(config).run()
