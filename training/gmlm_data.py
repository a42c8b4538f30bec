"""(source, target) text pairs for GMLM training: passage -> query from judged queries or
MS MARCO triples, abstract -> title from a corpus, or any JSONL file of pairs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from index.readers.corpus import read_corpus
from index.readers.queries import read_queries
from index.readers.trec import read_qrels
from index.readers.triples import read_triples
from training.run_config import StrictModel


@dataclass(frozen=True)
class TextPair:
    source: str
    target: str
    group: str
    """Pairs sharing a group (a query id, a document id) land on the same side of a split."""


class QrelsPairs(StrictModel):
    """Each judged-relevant (document, query) pair of a qrels file."""

    kind: Literal["qrels"] = "qrels"
    queries: Path
    qrels: Path
    corpus: Path
    split: str | None = None
    min_grade: int = 1


class TriplesPairs(StrictModel):
    """(positive passage, query) of MS MARCO triples."""

    kind: Literal["triples"] = "triples"
    path: Path
    limit: int | None = None


class TitlePairs(StrictModel):
    """(body, title) of a corpus whose documents have titles; documents judged in the
    ``exclude_qrels`` files are left out (keep evaluation documents unseen)."""

    kind: Literal["titles"] = "titles"
    corpus: Path
    exclude_qrels: list[Path] = Field(default_factory=list)
    limit: int | None = None


class JsonlPairs(StrictModel):
    """A JSONL file, one ``{"source": ..., "target": ...}`` object per line."""

    kind: Literal["pairs"] = "pairs"
    path: Path


PairSource = QrelsPairs | TriplesPairs | TitlePairs | JsonlPairs


def load_pairs(sources: Sequence[PairSource]) -> list[TextPair]:
    pairs: list[TextPair] = []
    for source in sources:
        if isinstance(source, QrelsPairs):
            pairs += _qrels_pairs(source)
        elif isinstance(source, TriplesPairs):
            pairs += _triples_pairs(source)
        elif isinstance(source, TitlePairs):
            pairs += _title_pairs(source)
        else:
            pairs += _jsonl_pairs(source.path)
    if not pairs:
        raise ValueError("the GMLM training sources yield no (source, target) pair")
    return pairs


def _qrels_pairs(source: QrelsPairs) -> list[TextPair]:
    queries = read_queries(source.queries, source.split)
    qrels = read_qrels(source.qrels)
    wanted = {d for qid in queries for d, g in qrels.get(qid, {}).items() if g >= source.min_grade}
    texts = {d.id: d.full_text for d in read_corpus(source.corpus) if d.id in wanted}
    return [
        TextPair(texts[doc_id], query, f"q:{qid}")
        for qid, query in queries.items()
        for doc_id, grade in sorted(qrels.get(qid, {}).items())
        if grade >= source.min_grade and doc_id in texts
    ]


def _triples_pairs(source: TriplesPairs) -> list[TextPair]:
    seen: set[tuple[str, str]] = set()
    pairs = []
    for i, triple in enumerate(read_triples(source.path)):
        if source.limit is not None and i >= source.limit:
            break
        if (triple.positive, triple.query) not in seen:
            seen.add((triple.positive, triple.query))
            pairs.append(TextPair(triple.positive, triple.query, f"t:{triple.query}"))
    return pairs


def _title_pairs(source: TitlePairs) -> list[TextPair]:
    excluded = {
        doc for path in source.exclude_qrels for docs in read_qrels(path).values() for doc in docs
    }
    pairs = []
    for doc in read_corpus(source.corpus):
        if doc.title.strip() and doc.text.strip() and doc.id not in excluded:
            pairs.append(TextPair(doc.text, doc.title, f"d:{doc.id}"))
            if source.limit is not None and len(pairs) >= source.limit:
                break
    return pairs


def _jsonl_pairs(path: Path) -> list[TextPair]:
    if not path.is_file():
        raise FileNotFoundError(f"no such pairs file: {path}")
    pairs = []
    with path.open(encoding="utf-8") as lines:
        for line_no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                source, target = row["source"], row["target"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(
                    f"{path}:{line_no}: expected a JSON object with 'source' and 'target' ({exc})"
                ) from exc
            if not (isinstance(source, str) and isinstance(target, str)):
                raise ValueError(f"{path}:{line_no}: 'source' and 'target' must be strings")
            pairs.append(TextPair(source, target, f"p:{line_no}"))
    return pairs
