"""Errors raised by file readers and index loading."""

from __future__ import annotations

from pathlib import Path


class MalformedInputError(ValueError):
    """A line of an input file cannot be read; the message names the file and the line."""

    def __init__(self, path: str | Path, line: int, reason: str):
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{self.path}:{line}: {reason}")


class IndexCorruptError(RuntimeError):
    """An index folder fails its manifest checks (missing file, checksum, count)."""


class ReadOnlyIndexError(RuntimeError):
    """A write asked of an index opened read-only (a serving replica)."""


class VectorStoreUnavailableError(RuntimeError):
    """The server holding an index's vectors (Qdrant) cannot be reached or refused a call."""
