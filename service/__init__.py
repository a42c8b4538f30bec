"""The Loupe HTTP service: FastAPI app factory, schemas, routers, engine, batching, client.

Importing this package is cheap: the app lives in :mod:`service.app`, the model-facing code
in :mod:`service.engine` and :mod:`service.loading`, and the HTTP client in
:mod:`service.client` (httpx and pydantic only, no torch).
"""

from __future__ import annotations
