"""Corpora, queries and judgments from ``ir_datasets`` (optional extra ``datasets``).

For users who are online: ``ir_datasets`` downloads data on first use, so nothing here runs
in tests or CI. Names are ``ir_datasets`` ids, e.g. ``msmarco-passage/trec-dl-2019/judged``
or ``beir/scifact/test``; a corpus can be given to ``loupe index build --corpus`` as
``irds:ID``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from index.readers.trec import Qrels
from index.records import Document

PREFIX = "irds:"


def _load(dataset_id: str) -> Any:
    try:
        import ir_datasets
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ValueError(
            "reading ir_datasets ids needs the optional extra: pip install 'loupe[datasets]'"
        ) from exc
    try:
        return ir_datasets.load(dataset_id)
    except KeyError as exc:
        raise ValueError(f"unknown ir_datasets id {dataset_id!r}") from exc


def irds_documents(dataset_id: str) -> Iterator[Document]:
    """The dataset's documents (title and text where it has them)."""
    dataset = _load(dataset_id)
    if not dataset.has_docs():
        raise ValueError(f"ir_datasets {dataset_id!r} has no documents")
    for doc in dataset.docs_iter():
        text = getattr(doc, "text", None) or getattr(doc, "body", None) or ""
        yield Document(
            id=str(doc.doc_id), text=str(text), title=str(getattr(doc, "title", "") or "")
        )


def irds_queries(dataset_id: str) -> dict[str, str]:
    dataset = _load(dataset_id)
    if not dataset.has_queries():
        raise ValueError(f"ir_datasets {dataset_id!r} has no queries")
    return {str(q.query_id): str(getattr(q, "text", "")) for q in dataset.queries_iter()}


def irds_qrels(dataset_id: str) -> Qrels:
    dataset = _load(dataset_id)
    if not dataset.has_qrels():
        raise ValueError(f"ir_datasets {dataset_id!r} has no judgments")
    qrels: Qrels = {}
    for row in dataset.qrels_iter():
        qrels.setdefault(str(row.query_id), {})[str(row.doc_id)] = int(row.relevance)
    return qrels
