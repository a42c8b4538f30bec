"""Training-data readers: MS MARCO triples and top1000 candidate files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from index.errors import MalformedInputError
from index.readers._lines import numbered_lines, split_fields
from index.records import Triple


def read_triples(path: str | Path) -> Iterator[Triple]:
    """``query<TAB>positive<TAB>negative`` per line (MS MARCO triples.train.*.tsv)."""
    for line_no, line in numbered_lines(path):
        if line.count("\t") != 2:
            raise MalformedInputError(path, line_no, "expected query<TAB>positive<TAB>negative")
        query, positive, negative = split_fields(path, line_no, line, 3, "\t")
        yield Triple(query=query, positive=positive, negative=negative)


def read_top1000(path: str | Path) -> Iterator[tuple[str, str, str, str]]:
    """``qid<TAB>pid<TAB>query<TAB>passage`` per line (MS MARCO top1000.*.tsv)."""
    for line_no, line in numbered_lines(path):
        if line.count("\t") != 3:
            raise MalformedInputError(path, line_no, "expected qid<TAB>pid<TAB>query<TAB>passage")
        qid, pid, query, passage = split_fields(path, line_no, line, 4, "\t")
        yield qid, pid, query, passage
