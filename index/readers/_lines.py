"""Line iteration shared by the readers: numbered, decoded, blank lines skipped."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from index.errors import MalformedInputError


def open_bytes(path: Path) -> gzip.GzipFile | BinaryIO:
    """Open a file for reading bytes, transparently gunzipping ``*.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return path.open("rb")


def numbered_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` without the newline, skipping blank lines. Each line is
    decoded apart (UTF-8), so that a line that is not UTF-8 is named by its own number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with open_bytes(path) as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\n").rstrip("\r")
            except UnicodeDecodeError as exc:
                raise MalformedInputError(path, line_no, f"not UTF-8 text ({exc.reason})") from exc
            if line.strip():
                yield line_no, line


def json_objects(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each line of a JSONL file."""
    for line_no, line in numbered_lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MalformedInputError(path, line_no, f"invalid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise MalformedInputError(path, line_no, "expected a JSON object")
        yield line_no, obj


def split_fields(
    path: str | Path, line_no: int, line: str, count: int, sep: str | None
) -> list[str]:
    """Split a line into exactly ``count`` fields (the last one takes the rest)."""
    fields = line.split(sep, count - 1) if sep else line.split(maxsplit=count - 1)
    if len(fields) != count:
        raise MalformedInputError(
            path, line_no, f"expected {count} fields, found {len(fields)}: {line[:80]!r}"
        )
    return fields


def require_str(path: str | Path, line_no: int, obj: dict[str, Any], *keys: str) -> str:
    """The first of ``keys`` present in ``obj``, as a string; error if none is."""
    for key in keys:
        if key in obj and obj[key] is not None:
            value = obj[key]
            if isinstance(value, (str, int)):
                return str(value)
            raise MalformedInputError(path, line_no, f"field {key!r} must be a string")
    raise MalformedInputError(path, line_no, f"missing field {' or '.join(map(repr, keys))}")
