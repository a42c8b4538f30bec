"""ASGI middleware: request metrics with a catch-all for 500s, and the body-size limit.

Both are plain ASGI (no ``BaseHTTPMiddleware``), so streaming and background tasks keep
working and an error never escapes as an unshaped 500.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ApiError, error_response
from service.metrics import ServiceMetrics

log = logging.getLogger(__name__)


def route_label(scope: Scope) -> str:
    """The matched route's path template (``/v1/documents/{doc_id}``), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class ObserveMiddleware:
    """Counts and times every request by route; turns unhandled errors into a shaped 500."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = False

        async def observed_send(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_started = True
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            status = 500
            if response_started:
                raise
            response = error_response(
                500, "internal_error", "internal server error; the service log has the details"
            )
            await response(scope, receive, send)
        finally:
            self.metrics.observe_request(
                route_label(scope), scope.get("method", ""), status, time.perf_counter() - started
            )


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with 413, by header or while reading."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> ApiError:
        return ApiError(
            413,
            f"request body is larger than the limit of {self.max_bytes} bytes",
            error_type="body_too_large",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                response = error_response(400, "bad_request", "invalid Content-Length header")
                await response(scope, receive, send)
                return
            if size > self.max_bytes:
                error = self._too_large()
                await error_response(413, error.error_type, error.message)(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, limited_receive, send)
