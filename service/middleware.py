"""ASGI middleware: request ids, request metrics with a catch-all for 500s, and the
body-size limit.

Both are plain ASGI (no ``BaseHTTPMiddleware``), so streaming and background tasks keep
working and an error never escapes as an unshaped 500.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ApiError, error_response
from service.metrics import ServiceMetrics

log = logging.getLogger(__name__)


REQUEST_ID_HEADER = b"x-request-id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's ``X-Request-ID`` where it is a plain token (at most 128 letters, digits
    and ``._:/+=-``), else a new one, so that a log line can be found by the id a client
    saw.

    >>> request_id([(b"x-request-id", b"abc-123")])
    'abc-123'
    >>> len(request_id([(b"x-request-id", b"two\\nlines")])), len(request_id([]))
    (32, 32)
    """
    for name, value in headers:
        if name.lower() == REQUEST_ID_HEADER:
            text = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text
    return uuid.uuid4().hex


def route_label(scope: Scope) -> str:
    """The matched route's path template (``/v1/documents/{doc_id}``), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class ObserveMiddleware:
    """Counts and times every request by route; gives every answer an ``X-Request-ID`` (the
    client's, or a new one); turns unhandled errors into a shaped 500 naming that id, which
    the log line of the error names too."""

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
        rid = request_id(list(scope.get("headers") or []))
        id_header = (REQUEST_ID_HEADER, rid.encode("latin-1"))

        async def observed_send(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_started = True
                message = {**message, "headers": [*message.get("headers", []), id_header]}
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except Exception:
            log.exception(
                "unhandled error in %s %s (request %s)", scope.get("method"), scope.get("path"), rid
            )
            status = 500
            if response_started:
                raise
            response = error_response(
                500,
                "internal_error",
                f"internal server error; the service log has the details (request {rid})",
                headers={"X-Request-ID": rid},
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
