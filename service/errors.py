"""Errors as HTTP answers: every error body is ``{"error": {"type", "message"}}``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

# Error type names by status, for errors raised without one.
STATUS_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "queue_full",
    500: "internal_error",
    503: "not_ready",
    504: "timeout",
}


class ApiError(HTTPException):
    """An error answer with a machine-readable ``type`` (raised by routers and middleware).

    It subclasses FastAPI's ``HTTPException`` so that one raised while the body is read
    (the body-size limit) passes through FastAPI unchanged.
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        error_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(status_code=status_code, detail=message, headers=dict(headers or {}))
        self.error_type = error_type or STATUS_TYPES.get(status_code, "error")
        self.message = message


def error_body(error_type: str, message: str) -> dict[str, Any]:
    """The JSON body of an error: ``error`` with its type and message, and the message again
    as ``detail``, where FastAPI's clients and Voyage AI's SDK read it (the SDK raises its
    typed errors, 401 AuthenticationError, 429 RateLimitError, from it).

    >>> error_body("not_found", "no document 'x'")
    {'error': {'type': 'not_found', 'message': "no document 'x'"}, 'detail': "no document 'x'"}
    """
    return {"error": {"type": error_type, "message": message}, "detail": message}


def error_response(
    status_code: int, error_type: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        error_body(error_type, message), status_code=status_code, headers=dict(headers or {})
    )


BODY_SHAPES = frozenset({"openai", "cohere", "voyage"})
"""Tags of a body taken in several shapes (``/v1/embed``, ``/v1/rerank``): pydantic puts the
shape chosen into an error's location, which names no field the client sent."""


def describe_validation_errors(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """``(type, message)`` for pydantic / FastAPI validation errors.

    >>> describe_validation_errors([{"type": "missing", "loc": ("body", "query"),
    ...                              "msg": "Field required"}])
    ('invalid_request', 'query: Field required')
    >>> describe_validation_errors([{"type": "string_type", "loc": ("body", "cohere", "texts", 0),
    ...                              "msg": "Input should be a valid string"}])
    ('invalid_request', 'texts.0: Input should be a valid string')
    """
    if any(e.get("type") == "json_invalid" for e in errors):
        first = next(e for e in errors if e.get("type") == "json_invalid")
        reason = (first.get("ctx") or {}).get("error", "JSON decode error")
        return "invalid_json", f"request body is not valid JSON: {reason}"
    parts = []
    for error in errors[:10]:
        loc = [str(x) for x in error.get("loc", ())]
        if loc[:1] == ["body"]:
            loc = loc[2:] if loc[1:2] and loc[1] in BODY_SHAPES else loc[1:]
        where = ".".join(loc) or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    if len(errors) > 10:
        parts.append(f"... and {len(errors) - 10} more")
    return "invalid_request", "; ".join(parts)


UNPARSABLE_BODY = "There was an error parsing the body"
"""FastAPI's 400 detail for a body it cannot decode (JSON that is not UTF-8 text)."""


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status, headers = exc.status_code, dict(exc.headers or {})
    if isinstance(exc, ApiError):
        error_type, message = exc.error_type, exc.message
    elif status == 400 and exc.detail == UNPARSABLE_BODY:  # malformed JSON, as any other
        status, error_type = 422, "invalid_json"
        message = "request body is not valid JSON: it cannot be decoded as UTF-8 text"
    else:
        error_type = STATUS_TYPES.get(status, "error")
        message = str(exc.detail)
    if status == 405:
        headers["Allow"] = allowed_methods(request, headers.get("Allow", ""))
    return error_response(status, error_type, message, headers)


def allowed_methods(request: Request, first_route_allows: str) -> str:
    """Every method some route of the path answers (Starlette's 405 names only those of the
    first route it matched: POST alone for ``/v1/documents``, which GET lists too)."""
    from starlette.routing import compile_path

    methods = {m.strip() for m in first_route_allows.split(",") if m.strip()}
    schema = request.app.openapi()
    for template, operations in schema.get("paths", {}).items():
        if compile_path(template)[0].match(request.url.path):
            methods |= {method.upper() for method in operations}
    return ", ".join(sorted(methods))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    error_type, message = describe_validation_errors(exc.errors())
    return error_response(422, error_type, message)


async def _vector_store_error(request: Request, exc: Exception) -> JSONResponse:
    """The server holding the vectors (Qdrant) is down or refusing: retry later."""
    log.warning("%s %s: %s", request.method, request.url.path, exc)
    return error_response(503, "vector_store_unavailable", str(exc), headers={"Retry-After": "5"})


async def _read_only_error(request: Request, exc: Exception) -> JSONResponse:
    """A write that reached a read-only index (the routes refuse them before any work)."""
    return error_response(403, "read_only", str(exc))


def install_error_handlers(app: FastAPI) -> None:
    """Answer HTTP and validation errors in the common shape (500s: see ``middleware``)."""
    from index.errors import ReadOnlyIndexError, VectorStoreUnavailableError

    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ReadOnlyIndexError, _read_only_error)
    app.add_exception_handler(VectorStoreUnavailableError, _vector_store_error)
