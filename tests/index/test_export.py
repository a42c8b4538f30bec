"""``loupe index export``: an index's documents written back out as a corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from index.export import PAGE, export_corpus, stored_documents
from index.live import LiveIndex
from index.metadata_filter import MetadataFilter
from index.readers import read_corpus
from index.records import Document
from loupe.cli import app
from tests.index.vectors import unit_vectors


def documents_by_id(documents: list[Document]) -> dict[str, tuple[str, str, dict]]:
    return {d.id: (d.title, d.text, d.metadata) for d in documents}


def test_export_writes_what_the_docstore_holds_and_builds_again(
    tmp_path: Path, tiny_corpus: Path, tiny_model_dir: Path
) -> None:
    runner = CliRunner()
    index = tmp_path / "index"
    build = ["index", "build", "--model", str(tiny_model_dir), "-q"]
    built = runner.invoke(app, [*build, "--corpus", str(tiny_corpus), "--out", str(index)])
    assert built.exit_code == 0, built.output
    live = LiveIndex.open(index)  # what the service does with documents sent over HTTP
    dim = live.manifest.dimension
    added = [
        Document("h1", "Added over HTTP.\nTwo lines, «quotes» and ünïcode.", "", {"n": 1}),
        Document("d3", "Dogs, replaced.", "Dogs", {"lang": "en", "v": 2}),
    ]
    live.add(added, unit_vectors(2, dim))
    live.delete("d2")
    expected = documents_by_id([d.document for d in live.docstore.page(None, 100)])
    live.snapshot()
    live.close()
    assert set(expected) == {"d1", "d3", "d4", "h1"}

    out = tmp_path / "export" / "corpus.jsonl"
    result = runner.invoke(app, ["index", "export", "--index", str(index), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote 4 documents to {out}" in result.output
    assert documents_by_id(list(read_corpus(out))) == expected
    assert [json.loads(line)["_id"] for line in out.read_text().splitlines()] == sorted(expected)

    english = tmp_path / "en.jsonl"
    result = runner.invoke(
        app,
        ["index", "export", "--index", str(index), "--out", str(english), "--filter", "lang=en"],
    )
    assert result.exit_code == 0, result.output
    assert sorted(d.id for d in read_corpus(english)) == ["d3", "d4"]

    rebuilt = tmp_path / "rebuilt"
    again = runner.invoke(app, [*build, "--corpus", str(out), "--out", str(rebuilt)])
    assert again.exit_code == 0, again.output
    assert documents_by_id(list(stored_documents(rebuilt))) == expected


def test_export_pages_through_large_stores_and_leaves_no_partial_file(tmp_path: Path) -> None:
    live = LiveIndex.open_or_create(tmp_path / "i", model="m", dimension=4)
    n = PAGE * 2 + 3
    live.add(
        [Document(f"doc-{i:05d}", f"text {i}", metadata={"even": i % 2 == 0}) for i in range(n)],
        unit_vectors(n, 4),
    )
    live.close()
    out = tmp_path / "all.jsonl"
    assert export_corpus(tmp_path / "i", out) == n
    assert [d.id for d in read_corpus(out)] == [f"doc-{i:05d}" for i in range(n)]
    even = MetadataFilter.from_mapping({"even": True})
    assert export_corpus(tmp_path / "i", tmp_path / "even.jsonl", even) == (n + 1) // 2
    with pytest.raises(FileNotFoundError):
        export_corpus(tmp_path / "missing", tmp_path / "none.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.jsonl", "even.jsonl", "i"]
