"""Writing an index's documents back out as a corpus: every document the docstore holds
(those added over HTTP included), as JSONL that ``loupe index build --corpus`` reads. This is
how an index is rebuilt for another encoder or re-ranker, or backed up as plain text."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from index.docstore import DocStore
from index.manifest import Manifest
from index.metadata_filter import MetadataFilter
from index.records import Document

PAGE = 1000
"""Documents read from the docstore per query."""


def stored_documents(folder: Path, where: MetadataFilter | None = None) -> Iterator[Document]:
    """The documents of the index in ``folder`` (whose metadata passes ``where``, if given),
    in id order, read from its docstore alone (no vectors are loaded; the service may be
    writing meanwhile: each document stored throughout is met once)."""
    manifest = Manifest.load(folder)
    with DocStore(folder / manifest.docstore_file, read_only=True) as docstore:
        after: str | None = None
        while True:
            page = docstore.page(after, PAGE, where)
            for stored in page:
                yield stored.document
            if len(page) < PAGE:
                return
            after = page[-1].document.id


def corpus_line(document: Document) -> str:
    """One line of BEIR-style corpus JSONL (metadata only where there is some).

    >>> corpus_line(Document("d1", "A loupe.", "Tools", {"topic": "tools"}))
    '{"_id": "d1", "title": "Tools", "text": "A loupe.", "metadata": {"topic": "tools"}}'
    >>> corpus_line(Document("d2", "Line one\\nline two"))
    '{"_id": "d2", "title": "", "text": "Line one\\\\nline two"}'
    """
    row: dict[str, object] = {"_id": document.id, "title": document.title, "text": document.text}
    if document.metadata:
        row["metadata"] = document.metadata
    return json.dumps(row, ensure_ascii=False)


def export_corpus(folder: Path, out: Path, where: MetadataFilter | None = None) -> int:
    """Write the index's documents to ``out`` as corpus JSONL; returns how many. The file
    appears whole or not at all (written beside it, then renamed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    count = 0
    try:
        with partial.open("w", encoding="utf-8") as file:
            for document in stored_documents(folder, where):
                file.write(corpus_line(document) + "\n")
                count += 1
            file.flush()
            os.fsync(file.fileno())
        partial.replace(out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return count
