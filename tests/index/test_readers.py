from __future__ import annotations

from pathlib import Path

import pytest

from index.errors import MalformedInputError
from index.readers import (
    read_corpus,
    read_qrels,
    read_queries,
    read_run,
    read_top1000,
    read_triples,
    write_run,
)


def test_reads_jsonl_corpus_with_title_and_metadata(tiny_corpus: Path) -> None:
    docs = list(read_corpus(tiny_corpus))
    assert [d.id for d in docs] == ["d1", "d2", "d3", "d4"]
    assert docs[0].full_text == "Cats Cats are small domesticated felines."
    assert docs[3].metadata == {"lang": "en"}


def test_reads_beir_folder(tmp_path: Path, tiny_corpus: Path) -> None:
    (tmp_path / "beir").mkdir()
    (tmp_path / "beir" / "corpus.jsonl").write_text(tiny_corpus.read_text())
    assert len(list(read_corpus(tmp_path / "beir"))) == 4


def test_reads_msmarco_collection_tsv(tmp_path: Path) -> None:
    path = tmp_path / "collection.tsv"
    path.write_text("0\tfirst passage\n\n7\tsecond\tpassage has a title\n")
    docs = list(read_corpus(path))
    assert [(d.id, d.text, d.title) for d in docs] == [
        ("0", "first passage", ""),
        ("7", "second", "passage has a title"),
    ]


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        ('{"_id": "a", "text": "ok"}\n{"_id": "b", "text": \n', 2, "invalid JSON"),
        ('{"_id": "a", "text": "ok"}\n{"_id": "b"}\n', 2, "missing field"),
        ('{"_id": "a", "text": "ok"}\n{"_id": "a", "text": "again"}\n', 2, "duplicate"),
        ('{"_id": "a", "text": "ok"}\n[1, 2]\n', 2, "JSON object"),
        ('{"_id": "a", "text": "ok", "metadata": 3}\n', 1, "metadata"),
    ],
)
def test_malformed_jsonl_names_file_and_line(
    tmp_path: Path, content: str, line: int, reason: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(MalformedInputError) as info:
        list(read_corpus(path))
    assert info.value.line == line
    assert str(path) in str(info.value)
    assert reason in str(info.value)


def test_malformed_tsv_and_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.tsv"
    path.write_text("1\tfine\nno tab here\n")
    with pytest.raises(MalformedInputError, match=r"c.tsv:2"):
        list(read_corpus(path))
    binary = tmp_path / "b.tsv"
    binary.write_bytes(b"1\tok\n2\t\xff\xfe\n")
    with pytest.raises(MalformedInputError, match=r"b.tsv:2: not UTF-8"):
        list(read_corpus(binary))
    # named by its own line, also past the first block a decoder reads, and gzipped
    many = b"".join(b'{"_id": "%d", "text": "caf\xc3\xa9 %d"}\r\n' % (i, i) for i in range(3000))
    late = tmp_path / "late.jsonl"
    late.write_bytes(many + b'{"_id": "x", "text": "\xff"}\n')
    with pytest.raises(MalformedInputError, match=r"late.jsonl:3001: not UTF-8"):
        list(read_corpus(late))
    import gzip

    zipped = tmp_path / "late.jsonl.gz"
    zipped.write_bytes(gzip.compress(many))
    documents = list(read_corpus(zipped))
    assert len(documents) == 3000 and documents[-1].text == "café 2999"


def test_missing_corpus_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        list(read_corpus(tmp_path / "nothing.jsonl"))


def test_queries_tsv_and_beir_split(tmp_path: Path) -> None:
    tsv = tmp_path / "q.tsv"
    tsv.write_text("1\tfirst query\n2\tsecond\n")
    assert read_queries(tsv) == {"1": "first query", "2": "second"}
    jsonl = tmp_path / "queries.jsonl"
    jsonl.write_text(
        '{"_id": "1", "text": "a", "split": "test"}\n{"_id": "2", "text": "b", "split": "train"}\n'
    )
    assert read_queries(jsonl, split="train") == {"2": "b"}
    assert len(read_queries(jsonl)) == 2
    tsv.write_text("1\tx\n1\ty\n")
    with pytest.raises(MalformedInputError, match="duplicate query"):
        read_queries(tsv)


def test_qrels_in_trec_msmarco_and_beir_forms(tmp_path: Path) -> None:
    trec = tmp_path / "qrels.trec"
    trec.write_text("1 0 d1 2\n1 0 d2 0\n2 0 d3 1\n")
    tsv = tmp_path / "qrels.tsv"
    tsv.write_text("1\t0\td1\t2\n1\t0\td2\t0\n2\t0\td3\t1\n")
    beir = tmp_path / "test.tsv"
    beir.write_text("query-id\tcorpus-id\tscore\n1\td1\t2\n1\td2\t0\n2\td3\t1\n")
    expected = {"1": {"d1": 2, "d2": 0}, "2": {"d3": 1}}
    assert read_qrels(trec) == read_qrels(tsv) == read_qrels(beir) == expected
    trec.write_text("1 0 d1 two\n")
    with pytest.raises(MalformedInputError, match="not a number"):
        read_qrels(trec)


def test_run_round_trip_orders_by_score(tmp_path: Path) -> None:
    run = {"q1": {"a": 0.5, "b": 2.0, "c": 1.0}, "q2": {"x": -1.0}}
    path = tmp_path / "out" / "run.trec"
    write_run(run, path, tag="test")
    lines = path.read_text().splitlines()
    assert lines[0] == "q1 Q0 b 1 2.000000 test"
    assert [line.split()[2] for line in lines[:3]] == ["b", "c", "a"]
    assert read_run(path) == run


def test_run_with_duplicate_document_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "run.trec"
    path.write_text("q1 Q0 a 1 2.0 t\nq1 Q0 a 2 1.0 t\n")
    with pytest.raises(MalformedInputError, match="listed twice"):
        read_run(path)
    path.write_text("q1 Q0 a 1 2.0\n")
    with pytest.raises(MalformedInputError, match=r"run.trec:1"):
        read_run(path)


def test_triples_and_top1000(tmp_path: Path) -> None:
    triples = tmp_path / "triples.tsv"
    triples.write_text("what is x\tx is y\tz is w\n")
    assert [t.positive for t in read_triples(triples)] == ["x is y"]
    triples.write_text("only\ttwo\n")
    with pytest.raises(MalformedInputError):
        list(read_triples(triples))
    top = tmp_path / "top1000.tsv"
    top.write_text("1\t10\tquery\tpassage text\n")
    assert list(read_top1000(top)) == [("1", "10", "query", "passage text")]


@pytest.mark.data
def test_shared_data_readers_give_the_published_counts(shared_data: Path) -> None:
    scifact = shared_data / "beir-scifact"
    assert sum(1 for _ in read_corpus(scifact)) == 5183
    assert len(read_queries(scifact / "queries.jsonl", split="test")) == 300
    assert len(read_queries(scifact / "queries.jsonl", split="train")) == 809
    assert sum(len(v) for v in read_qrels(scifact / "qrels" / "test.tsv").values()) == 339
    dl19 = shared_data / "trec-dl-2019-passage"
    assert len(read_run(dl19 / "run.BM25.top100.trec")) == 43


def test_ir_datasets_ids_without_the_extra_give_a_clear_error() -> None:
    import importlib.util

    if importlib.util.find_spec("ir_datasets") is not None:
        pytest.skip("ir_datasets is installed; reading an id would go online")
    with pytest.raises(ValueError, match="optional extra"):
        list(read_corpus("irds:beir/scifact"))
    with pytest.raises(ValueError, match="optional extra"):
        read_qrels("irds:beir/scifact/test")
