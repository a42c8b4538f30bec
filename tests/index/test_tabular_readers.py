"""CSV and Parquet corpora: the same documents as JSONL, other columns as metadata, and bad
rows named by file and line (or row)."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import pytest

from index.errors import MalformedInputError
from index.readers import read_corpus
from index.records import Document

EXPECTED = [
    Document("d1", "Cats purr.", "Cats", {"lang": "en", "year": 2024}),
    Document("d2", 'A "quoted", comma text\non two lines.', "", {"lang": "fr"}),
    Document("3", "Numbers as ids.", "", {"source": "web", "lang": "en", "zip": "02139"}),
]


def test_csv_rows_are_documents(tmp_path: Path) -> None:
    rows = (
        "id,title,text,lang,year,metadata,zip\n"
        "d1,Cats,Cats purr.,en,2024,,\n"
        'd2,,"A ""quoted"", comma text\non two lines.",fr,,,\n'
        "\n"
        '3,,Numbers as ids.,en,,"{""source"": ""web""}",02139\n'
    )
    path = tmp_path / "corpus.csv"
    path.write_text(rows)
    assert list(read_corpus(path)) == EXPECTED
    packed = tmp_path / "corpus.csv.gz"
    packed.write_bytes(gzip.compress(rows.encode()))
    assert list(read_corpus(packed)) == EXPECTED


@pytest.mark.parametrize(
    ("rows", "line", "reason"),
    [
        ("id,text\nd1,fine\n,empty id\n", 3, "empty document id"),
        ("id,body\nd1,text\n", 2, "no column 'text' or 'contents'"),
        ("id,text\nd1,a,extra\n", 2, "more fields than the header"),
        ("id,text,metadata\nd1,a,{not json\n", 2, "column 'metadata' is not JSON"),
        ("id,text,metadata\nd1,a,[1]\n", 2, "must hold a JSON object"),
        ("id,text\nd1,a\nd1,b\n", 3, "duplicate document id 'd1'"),
    ],
)
def test_a_bad_csv_row_is_named(tmp_path: Path, rows: str, line: int, reason: str) -> None:
    path = tmp_path / "c.csv"
    path.write_text(rows)
    with pytest.raises(MalformedInputError, match=reason) as caught:
        list(read_corpus(path))
    assert caught.value.line == line and caught.value.path == str(path)


def test_a_csv_field_longer_than_the_csv_modules_default_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    long_text = "word " * 60_000  # 300 KB, over csv's 128 KiB default
    path.write_text(f"id,text\nd1,{long_text}\n")
    (document,) = read_corpus(path)
    assert document.text == long_text


def test_a_csv_line_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(b"id,text\nd1,fine\nd2,caf\xe9\n")
    with pytest.raises(MalformedInputError, match="not UTF-8") as caught:
        list(read_corpus(path))
    assert caught.value.line == 3


def test_parquet_rows_are_documents_with_typed_metadata(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "_id": ["d1", "d2"],
            "title": ["Cats", None],
            "text": ["Cats purr.", "Dogs bark."],
            "year": [2024, 2019],
            "published": [dt.date(2024, 1, 2), dt.date(2019, 5, 6)],
            "tags": [["pets", "cats"], []],
            "metadata": [{"source": "web"}, None],
        }
    )
    path = tmp_path / "corpus.parquet"
    pq.write_table(table, path, row_group_size=1)  # read across row groups
    documents = list(read_corpus(path))
    assert documents == [
        Document(
            "d1",
            "Cats purr.",
            "Cats",
            {"source": "web", "year": 2024, "published": "2024-01-02", "tags": ["pets", "cats"]},
        ),
        Document("d2", "Dogs bark.", "", {"year": 2019, "published": "2019-05-06", "tags": []}),
    ]
    pq.write_table(pa.table({"id": ["d1"], "text": [b"bytes"]}), tmp_path / "bad.parquet")
    with pytest.raises(MalformedInputError, match="column 'text' must hold text") as caught:
        list(read_corpus(tmp_path / "bad.parquet"))
    assert caught.value.line == 1
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(MalformedInputError, match="not a Parquet file"):
        list(read_corpus(tmp_path / "junk.parquet"))


def test_parquet_without_pyarrow_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    path = tmp_path / "corpus.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # as if not installed
    with pytest.raises(ValueError, match=r"pip install 'loupe\[parquet\]'"):
        list(read_corpus(path))
