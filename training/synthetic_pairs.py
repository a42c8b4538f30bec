"""Synthetic training pairs on disk: one JSON object per line,
``{"query_id", "query", "doc_id", "generator", "kept", "first_stage_rank"}``, plus a TREC
qrels file of the kept pairs (``query_id 0 doc_id 1``) written beside it.

The JSONL is also a queries file the readers take (``query_id`` and ``query`` fields), so the
pair file and its qrels work as an ordinary qrels source too. Rows with ``kept`` false failed
the consistency filter and are skipped by :func:`read_pairs` unless asked for.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from index.errors import MalformedInputError
from index.readers._lines import json_objects, require_str


@dataclass(frozen=True)
class SyntheticPair:
    query_id: str
    query: str
    doc_id: str
    generator: str
    kept: bool = True
    first_stage_rank: int | None = None
    """1-based rank of ``doc_id`` for ``query`` in the filter's first stage (None: not in its
    top k, or no filter)."""


def qrels_path(pairs_path: Path) -> Path:
    """The qrels file written beside a pair file.

    >>> qrels_path(Path("runs/syn.jsonl")).name
    'syn.qrels'
    """
    return pairs_path.with_suffix(".qrels")


def read_pairs(path: Path, *, include_dropped: bool = False) -> list[SyntheticPair]:
    """Read a pair file; errors name the file and line."""
    pairs = []
    for line_no, obj in json_objects(path):
        kept = obj.get("kept", True)
        rank = obj.get("first_stage_rank")
        if not isinstance(kept, bool) or not (rank is None or isinstance(rank, int)):
            raise MalformedInputError(
                path, line_no, "'kept' must be true/false and 'first_stage_rank' an integer"
            )
        pair = SyntheticPair(
            query_id=require_str(path, line_no, obj, "query_id"),
            query=require_str(path, line_no, obj, "query"),
            doc_id=require_str(path, line_no, obj, "doc_id"),
            generator=str(obj.get("generator", "")),
            kept=kept,
            first_stage_rank=rank,
        )
        if include_dropped or pair.kept:
            pairs.append(pair)
    return pairs


def trim_partial_line(path: Path) -> None:
    """Drop an unfinished last line (a run stopped mid-write), so appending resumes cleanly."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)


def append_pairs(path: Path, pairs: Iterable[SyntheticPair]) -> None:
    """Append rows in one write, flushed and synced (a batch lands whole or as a partial last
    line that :func:`trim_partial_line` removes)."""
    text = "".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in pairs)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def write_qrels(pairs: Iterable[SyntheticPair], path: Path) -> int:
    """TREC qrels of the kept pairs (atomically); returns how many lines."""
    lines = [f"{p.query_id} 0 {p.doc_id} 1\n" for p in pairs if p.kept]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(lines))
    tmp.replace(path)
    return len(lines)
