"""Plain records passed between readers, the docstore and the indexes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EXPANSION_KEY = "doc2query"
"""The metadata field holding a document's generated queries (``loupe index build
--expand``): a list of strings that every first stage indexes with the document."""


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

    @property
    def expansion(self) -> list[str]:
        """The document's doc2query queries: the strings of its ``doc2query`` metadata list
        (nothing where that is not a list).

        >>> Document("1", "Cats purr.", metadata={"doc2query": ["why cats purr", 3]}).expansion
        ['why cats purr']
        >>> Document("1", "x", metadata={"doc2query": "not a list"}).expansion
        []
        """
        queries = self.metadata.get(EXPANSION_KEY)
        return [q for q in queries if isinstance(q, str)] if isinstance(queries, list) else []

    @property
    def first_stage_text(self) -> str:
        """What the first stages index (dense vectors, BM25, the full-text index): the full
        text, then its doc2query queries. The re-ranker reads :attr:`full_text`.

        >>> cats = Document("1", "Cats purr.", "Cats", {"doc2query": ["why do cats purr"]})
        >>> cats.first_stage_text
        'Cats Cats purr. why do cats purr'
        """
        return " ".join([self.full_text, *self.expansion])


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
