"""OpenAPI descriptions of the error answers the routers can give."""

from __future__ import annotations

from typing import Any

from service.schemas import ErrorResponse


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting the error body for each status code."""
    return {code: {"model": ErrorResponse} for code in codes}


MODEL_ERRORS = errors(401, 413, 422, 429, 500, 503, 504)
