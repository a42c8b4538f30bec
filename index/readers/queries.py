"""Query readers: MS MARCO / TREC topics TSV (id<TAB>text) and BEIR queries.jsonl."""

from __future__ import annotations

from pathlib import Path

from index.errors import MalformedInputError
from index.readers._lines import json_objects, numbered_lines, require_str, split_fields
from index.readers.ir_datasets_adapter import PREFIX, irds_queries
from index.records import Query


def queries_file(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        for name in ("queries.jsonl", "queries.tsv"):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"{path} holds no queries.jsonl or queries.tsv")
    return path


def read_queries(path: str | Path, split: str | None = None) -> dict[str, str]:
    """Map query id to text.

    ``split`` keeps only BEIR queries whose ``split`` field (or ``metadata.split``) equals it;
    a TSV has no splits, so ``split`` must then be None.
    """
    if str(path).startswith(PREFIX):
        return irds_queries(str(path)[len(PREFIX) :])
    file = queries_file(path)
    queries: dict[str, str] = {}
    name = file.name.removesuffix(".gz")
    if name.endswith((".jsonl", ".json")):
        for line_no, obj in json_objects(file):
            query = Query(
                require_str(file, line_no, obj, "_id", "id", "qid", "query_id"),
                require_str(file, line_no, obj, "text", "query"),
            )
            query_split = obj.get("split") or (obj.get("metadata") or {}).get("split")
            if split is not None and query_split != split:
                continue
            _add(queries, query, file, line_no)
    else:
        if split is not None:
            raise ValueError(f"{file} is a TSV and has no splits; drop the split {split!r}")
        for line_no, line in numbered_lines(file):
            if "\t" not in line:
                raise MalformedInputError(file, line_no, "expected query_id<TAB>text")
            qid, text = split_fields(file, line_no, line, 2, "\t")
            _add(queries, Query(qid.strip(), text.strip()), file, line_no)
    return queries


def _add(queries: dict[str, str], query: Query, file: Path, line_no: int) -> None:
    if not query.id:
        raise MalformedInputError(file, line_no, "empty query id")
    if query.id in queries:
        raise MalformedInputError(file, line_no, f"duplicate query id {query.id!r}")
    queries[query.id] = query.text
