"""The configured request maxima, checked before any model work (413 when exceeded)."""

from __future__ import annotations

from collections.abc import Sequence

from service.errors import ApiError
from service.settings import ServiceSettings


def check_count(count: int, settings: ServiceSettings, what: str = "documents") -> None:
    """413 when a request carries more than ``max_documents`` items."""
    if count > settings.max_documents:
        raise ApiError(
            413,
            f"{count} {what} in one request; the limit is {settings.max_documents}",
            error_type="too_many_documents",
        )


def check_lengths(
    texts: Sequence[str], settings: ServiceSettings, what: str, *, hint: str = ""
) -> None:
    """413 naming the first text longer than ``max_text_chars``."""
    limit = settings.max_text_chars
    for i, text in enumerate(texts):
        if len(text) > limit:
            where = what if what == "query" else f"{what}[{i}]"
            raise ApiError(
                413,
                f"{where} has {len(text)} characters; the limit is {limit}{hint}",
                error_type="text_too_long",
            )
