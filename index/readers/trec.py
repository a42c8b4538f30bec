"""Judgments and runs: qrels (TREC, MS MARCO TSV, BEIR TSV) and TREC run files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from index.errors import MalformedInputError
from index.readers._lines import numbered_lines

Qrels = dict[str, dict[str, int]]
"""query id -> document id -> graded relevance."""
Run = dict[str, dict[str, float]]
"""query id -> document id -> score (higher is better)."""


def read_qrels(path: str | Path) -> Qrels:
    """Read qrels in TREC form (``qid iter docid rel``), MS MARCO TSV (same, tab-separated)
    or BEIR TSV (``query-id corpus-id score`` with a header line); ``irds:ID`` reads an
    ``ir_datasets`` id's judgments (optional extra ``datasets``; online)."""
    if str(path).startswith("irds:"):
        from index.readers.ir_datasets_adapter import irds_qrels

        return irds_qrels(str(path)[len("irds:") :])
    qrels: Qrels = {}
    for line_no, line in numbered_lines(path):
        fields = line.split()
        if line_no == 1 and fields[:2] == ["query-id", "corpus-id"]:
            continue
        if len(fields) == 4:
            qid, _, doc_id, rel = fields
        elif len(fields) == 3:
            qid, doc_id, rel = fields
        else:
            raise MalformedInputError(
                path, line_no, f"expected 'qid 0 docid rel' or 'qid docid rel', got {line[:80]!r}"
            )
        try:
            grade = int(float(rel))
        except ValueError as exc:
            raise MalformedInputError(path, line_no, f"relevance {rel!r} is not a number") from exc
        judged = qrels.setdefault(qid, {})
        if doc_id in judged and judged[doc_id] != grade:
            raise MalformedInputError(path, line_no, f"conflicting judgments for {qid} {doc_id}")
        judged[doc_id] = grade
    return qrels


def read_run(path: str | Path) -> Run:
    """Read a TREC run: ``qid Q0 docid rank score tag`` per line."""
    run: Run = {}
    for line_no, line in numbered_lines(path):
        fields = line.split()
        if len(fields) != 6:
            raise MalformedInputError(
                path, line_no, f"expected 'qid Q0 docid rank score tag', got {line[:80]!r}"
            )
        qid, _, doc_id, _rank, score, _tag = fields
        try:
            value = float(score)
        except ValueError as exc:
            raise MalformedInputError(path, line_no, f"score {score!r} is not a number") from exc
        ranked = run.setdefault(qid, {})
        if doc_id in ranked:
            raise MalformedInputError(path, line_no, f"document {doc_id} listed twice for {qid}")
        ranked[doc_id] = value
    return run


def ranked(scores: Mapping[str, float], depth: int | None = None) -> list[tuple[str, float]]:
    """Documents by descending score, ties broken by id for a stable order.

    >>> ranked({"b": 1.0, "a": 1.0, "c": 2.0})
    [('c', 2.0), ('a', 1.0), ('b', 1.0)]
    """
    items = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    return items if depth is None else items[:depth]


def write_run(run: Mapping[str, Mapping[str, float]], path: str | Path, tag: str = "loupe") -> None:
    """Write a TREC run (atomically: a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for qid in run:
            for rank, (doc_id, score) in enumerate(ranked(run[qid]), start=1):
                out.write(f"{qid} Q0 {doc_id} {rank} {score:.6f} {tag}\n")
    os.replace(tmp, path)
