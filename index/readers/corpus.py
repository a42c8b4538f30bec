"""Corpus readers: MS MARCO collection.tsv, BEIR folders / corpus.jsonl, plain JSONL, CSV
with a header row, Parquet (see index/readers/tabular.py)."""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

from index.errors import MalformedInputError
from index.readers._lines import json_objects, numbered_lines, require_str, split_fields
from index.readers.ir_datasets_adapter import PREFIX, irds_documents
from index.readers.tabular import read_csv, read_parquet
from index.records import Document


class CorpusFormat(StrEnum):
    auto = "auto"
    tsv = "tsv"  # MS MARCO collection.tsv: id<TAB>text[<TAB>title]
    jsonl = "jsonl"  # BEIR corpus.jsonl or plain JSONL: _id|id, text, title?, metadata?
    csv = "csv"  # a header row naming _id|id, text, title?, metadata?, other columns
    parquet = "parquet"  # the same columns, typed


def corpus_file(path: str | Path) -> Path:
    """The corpus file a path names: the path itself, or ``corpus.jsonl`` in a BEIR folder."""
    path = Path(path)
    if path.is_dir():
        for name in ("corpus.jsonl", "corpus.jsonl.gz", "collection.tsv", "collection.tsv.gz"):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"{path} holds no corpus.jsonl or collection.tsv")
    if not path.is_file():
        raise FileNotFoundError(f"no such corpus: {path}")
    return path


def detect_format(path: Path) -> CorpusFormat:
    name = path.name.removesuffix(".gz")
    if name.endswith((".jsonl", ".json")):
        return CorpusFormat.jsonl
    if name.endswith((".tsv", ".txt")):
        return CorpusFormat.tsv
    if name.endswith(".csv"):
        return CorpusFormat.csv
    if name.endswith((".parquet", ".pq")):
        return CorpusFormat.parquet
    raise ValueError(
        f"cannot tell the format of {path}: name it *.tsv, *.jsonl, *.csv or *.parquet, "
        "or pass a format"
    )


def read_corpus(path: str | Path, fmt: CorpusFormat = CorpusFormat.auto) -> Iterator[Document]:
    """Yield the documents of a corpus file or BEIR folder, in file order.

    Duplicate ids are an error, since a later copy would silently replace an earlier one.
    ``irds:ID`` reads an ``ir_datasets`` corpus (optional extra ``datasets``; online).
    """
    if str(path).startswith(PREFIX):
        yield from irds_documents(str(path)[len(PREFIX) :])
        return
    file = corpus_file(path)
    fmt = detect_format(file) if fmt == CorpusFormat.auto else fmt
    seen: set[str] = set()
    reader = {
        CorpusFormat.jsonl: _read_jsonl,
        CorpusFormat.tsv: _read_tsv,
        CorpusFormat.csv: read_csv,
        CorpusFormat.parquet: read_parquet,
    }[fmt]
    for line_no, doc in reader(file):
        if doc.id in seen:
            raise MalformedInputError(file, line_no, f"duplicate document id {doc.id!r}")
        seen.add(doc.id)
        yield doc


def _read_tsv(file: Path) -> Iterator[tuple[int, Document]]:
    for line_no, line in numbered_lines(file):
        if "\t" not in line:
            raise MalformedInputError(file, line_no, "expected id<TAB>text")
        doc_id, rest = split_fields(file, line_no, line, 2, "\t")
        text, _, title = rest.partition("\t")
        if not doc_id.strip():
            raise MalformedInputError(file, line_no, "empty document id")
        yield line_no, Document(id=doc_id.strip(), text=text, title=title)


def _read_jsonl(file: Path) -> Iterator[tuple[int, Document]]:
    for line_no, obj in json_objects(file):
        doc_id = require_str(file, line_no, obj, "_id", "id", "docid", "doc_id")
        text = require_str(file, line_no, obj, "text", "contents")
        title = obj.get("title") or ""
        if not isinstance(title, str):
            raise MalformedInputError(file, line_no, "field 'title' must be a string")
        metadata = obj.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise MalformedInputError(file, line_no, "field 'metadata' must be an object")
        if not doc_id.strip():
            raise MalformedInputError(file, line_no, "empty document id")
        yield line_no, Document(id=doc_id.strip(), text=text, title=title, metadata=metadata)
