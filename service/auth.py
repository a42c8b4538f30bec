"""Optional API key: ``Authorization: Bearer <key>`` on the ``/v1`` and ``/v2`` routes and on
``/rerank`` and ``/embed`` (TEI's paths).

Checked in ASGI middleware, before the body is read, so an unauthenticated request gets 401
whatever its body. ``/health``, ``/ready``, ``/metrics`` and ``/docs`` stay open. A read key
(``--read-api-key``) may call every protected route but those that change documents, which
answer it 403: a key for a web page or a search front end, which cannot empty the index.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import error_response

PROTECTED_PREFIXES = ("/v1/", "/v2/")
PROTECTED_PATHS = frozenset({"/rerank", "/rerank/", "/embed", "/embed/"})
"""Routes outside the prefixes that need the key too (TEI's paths)."""


def is_protected(path: str) -> bool:
    """Whether a request path needs the API key.

    >>> [is_protected(p) for p in ("/v1/rerank", "/rerank", "/embed", "/ready", "/docs")]
    [True, True, True, False, False]
    """
    return path.startswith(PROTECTED_PREFIXES) or path in PROTECTED_PATHS


def changes_documents(method: str, path: str) -> bool:
    """Whether a request writes documents (adds, replaces or deletes them).

    >>> [changes_documents(m, p) for m, p in (("POST", "/v1/documents"),
    ...  ("POST", "/v1/documents/delete"), ("DELETE", "/v1/documents/a/b"),
    ...  ("GET", "/v1/documents/a"), ("POST", "/v1/search"), ("POST", "/v1/documents/"))]
    [True, True, True, False, False, True]
    """
    if method == "DELETE":
        return path.startswith("/v1/documents/")
    return method == "POST" and path.rstrip("/") in ("/v1/documents", "/v1/documents/delete")


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value.

    >>> bearer_token("Bearer abc"), bearer_token("bearer  abc "), bearer_token("Basic x")
    ('abc', 'abc', None)
    """
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def key_matches(token: str | None, api_keys: Sequence[str]) -> bool:
    """Whether a presented token is one of the configured keys, each compared in constant
    time (and every key compared, so the time says nothing about which one matched).

    >>> key_matches("b", ["a", "b"]), key_matches("c", ["a", "b"]), key_matches(None, ["a"])
    (True, False, False)
    """
    if token is None:
        return False
    matches = [secrets.compare_digest(token.encode(), key.encode()) for key in api_keys]
    return any(matches)


class ApiKeyMiddleware:
    """Answers 401 on protected paths unless the Bearer token is one of ``api_keys`` or
    ``read_api_keys``, and 403 to a read key on a route that changes documents."""

    def __init__(self, app: ASGIApp, api_keys: Sequence[str], read_api_keys: Sequence[str] = ()):
        if not api_keys and not read_api_keys:
            raise ValueError("give at least one API key")
        self.app = app
        self.api_keys = tuple(api_keys)
        self.read_api_keys = tuple(read_api_keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] == "http" and is_protected(path):
            headers = dict(scope.get("headers") or [])
            raw = headers.get(b"authorization")
            token = bearer_token(raw.decode("latin-1") if raw else None)
            allowed = key_matches(token, self.api_keys)
            if not allowed and key_matches(token, self.read_api_keys):
                if changes_documents(str(scope.get("method", "")), path):
                    response = error_response(
                        403, "forbidden", "this API key may read, not change documents"
                    )
                    await response(scope, receive, send)
                    return
                allowed = True
            if not allowed:
                message = (
                    "missing API key: send 'Authorization: Bearer <key>'"
                    if token is None
                    else "invalid API key"
                )
                response = error_response(
                    401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"}
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
