"""Readers for the usual IR file formats; each error names the file and line."""

from __future__ import annotations

from index.readers.corpus import CorpusFormat, read_corpus
from index.readers.queries import read_queries
from index.readers.trec import Qrels, Run, read_qrels, read_run, write_run
from index.readers.triples import read_top1000, read_triples

__all__ = [
    "CorpusFormat",
    "Qrels",
    "Run",
    "read_corpus",
    "read_qrels",
    "read_queries",
    "read_run",
    "read_top1000",
    "read_triples",
    "write_run",
]
