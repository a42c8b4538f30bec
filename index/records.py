"""Plain records passed between readers, the docstore and the indexes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Document:
    """One passage or document of a corpus."""

    id: str
    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def full_text(self) -> str:
        """Text given to encoders: title and body, BEIR-style.

        >>> Document("1", "body", "Title").full_text
        'Title body'
        """
        return f"{self.title} {self.text}" if self.title else self.text


@dataclass(frozen=True)
class Query:
    id: str
    text: str


@dataclass(frozen=True)
class Triple:
    """A training example: query, positive passage, negative passage (MS MARCO triples)."""

    query: str
    positive: str
    negative: str
