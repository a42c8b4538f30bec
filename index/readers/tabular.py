"""Tabular corpora: CSV with a header row, and Parquet (the ``parquet`` extra, pyarrow).

A row is a document: ``_id``, ``id``, ``docid`` or ``doc_id`` names it, ``text`` (or
``contents``) holds its text, ``title`` its title if any; a ``metadata`` column (a JSON
object, or a Parquet struct) and every other column become its metadata fields, which
filters read. A CSV value that reads as a number is one (``2024``, ``-3.5``, ``1e3``; not
``007`` or ``+1``, which stay text), so that range filters work; others are strings.
Parquet keeps its types, dates written as ISO strings. Errors name the file and the line
(CSV, counting the header as line 1) or the row (Parquet, from 1).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from index.errors import MalformedInputError
from index.readers._lines import open_bytes
from index.records import Document

ID_COLUMNS = ("_id", "id", "docid", "doc_id")
TEXT_COLUMNS = ("text", "contents")
PARQUET_BATCH = 4096
CSV_FIELD_LIMIT = 2**31 - 1
"""Longest CSV field read (the csv module's default is 128 KiB, less than a long paper)."""
_TEXT_COLUMNS = {*ID_COLUMNS, *TEXT_COLUMNS, "title", "metadata"}
"""Columns read as they are written, never as numbers."""


def document_from_row(path: Path, line: int, row: Mapping[str, Any]) -> Document:
    """The document a row holds (see the module's docstring).

    >>> document_from_row(Path("c.csv"), 2, {"id": "d1", "text": "Cats.", "year": "2024"})
    Document(id='d1', text='Cats.', title='', metadata={'year': '2024'})
    """
    doc_id = _first(path, line, row, ID_COLUMNS, allow_int=True)
    text = _first(path, line, row, TEXT_COLUMNS, allow_int=False)
    title = row.get("title") or ""
    if not isinstance(title, str):
        raise MalformedInputError(path, line, "column 'title' must hold text")
    if not doc_id.strip():
        raise MalformedInputError(path, line, "empty document id")
    metadata = _metadata_column(path, line, row.get("metadata"))
    for name, value in row.items():
        if name not in _TEXT_COLUMNS and value is not None and value != "":
            metadata[name] = _json_value(path, line, name, value)
    return Document(id=doc_id.strip(), text=text, title=title, metadata=metadata)


def _first(
    path: Path, line: int, row: Mapping[str, Any], names: tuple[str, ...], *, allow_int: bool
) -> str:
    for name in names:
        value = row.get(name)
        if value is None:
            continue
        if isinstance(value, str) or (allow_int and isinstance(value, int)):
            return str(value)
        raise MalformedInputError(path, line, f"column {name!r} must hold text")
    raise MalformedInputError(path, line, f"no column {' or '.join(map(repr, names))}")


def _metadata_column(path: Path, line: int, value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise MalformedInputError(
                path, line, f"column 'metadata' is not JSON ({exc.msg})"
            ) from exc
    if not isinstance(value, dict):
        raise MalformedInputError(path, line, "column 'metadata' must hold a JSON object")
    return {str(k): _json_value(path, line, f"metadata.{k}", v) for k, v in value.items()}


def _json_value(path: Path, line: int, name: str, value: Any) -> Any:
    """A Parquet or CSV value as JSON can hold it.

    >>> _json_value(Path("c"), 1, "d", dt.date(2024, 1, 2)), _json_value(Path("c"), 1, "n", 3)
    ('2024-01-02', 3)
    """
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list | tuple):
        return [_json_value(path, line, name, v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(path, line, f"{name}.{k}", v) for k, v in value.items()}
    raise MalformedInputError(
        path, line, f"column {name!r} holds {type(value).__name__}, which JSON cannot"
    )


CSV_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def csv_value(text: str) -> str | int | float:
    """A CSV metadata value: a number where the text is one as JSON writes numbers.

    >>> [csv_value(t) for t in ("2024", "-3.5", "1e3", "007", "+1", "12 apples", "nan")]
    [2024, -3.5, 1000.0, '007', '+1', '12 apples', 'nan']
    """
    if not CSV_NUMBER.fullmatch(text):
        return text
    number = float(text)
    if "." in text or "e" in text.lower():
        return number if math.isfinite(number) else text
    return int(text) if abs(int(text)) < 2**63 else text


def read_csv(path: Path) -> Iterator[tuple[int, Document]]:
    """``(line, document)`` for each row of a CSV file with a header row (``*.csv.gz`` too)."""
    # a document may be longer than the csv module's default field limit (128 KiB)
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    with open_bytes(path) as raw:
        reader = csv.DictReader(_decoded_lines(path, raw))
        try:
            if reader.fieldnames is None:
                return
            for row in reader:
                if None in row:  # more fields than the header names
                    raise MalformedInputError(
                        path, reader.line_num, "more fields than the header row names"
                    )
                if not any(value for value in row.values()):
                    continue  # a blank line
                typed = {k: csv_value(v) if k not in _TEXT_COLUMNS else v for k, v in row.items()}
                yield reader.line_num, document_from_row(path, reader.line_num, typed)
        except csv.Error as exc:
            raise MalformedInputError(path, reader.line_num, f"not CSV ({exc})") from exc


def _decoded_lines(path: Path, raw: Iterable[bytes]) -> Iterator[str]:
    """The file's lines, each decoded apart (UTF-8, a BOM dropped), so that a line that is
    not UTF-8 is named by its own number."""
    for line_no, line in enumerate(raw, start=1):
        try:
            text = line.decode("utf-8-sig" if line_no == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedInputError(path, line_no, f"not UTF-8 text ({exc.reason})") from exc
        yield text


def read_parquet(path: Path) -> Iterator[tuple[int, Document]]:
    """``(row, document)`` for each row of a Parquet file, read a batch at a time."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # a user error (exit 2 at the command line), not a crash
        raise ValueError(
            f"{path}: reading Parquet needs pyarrow: pip install 'loupe[parquet]'"
        ) from exc
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own error types for a bad file
        raise MalformedInputError(path, 0, f"not a Parquet file ({exc})") from exc
    row_no = 0
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH):
        for row in batch.to_pylist():
            row_no += 1
            yield row_no, document_from_row(path, row_no, row)
