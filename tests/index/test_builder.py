from __future__ import annotations

import json
from pathlib import Path

import pytest

from index.builder import IndexBuildConfig, build_index
from index.errors import IndexCorruptError, MalformedInputError
from index.manifest import Manifest
from index.searcher import IndexReader, Searcher


def build(corpus: Path, out: Path, encoder, factory: str = "Flat"):
    config = IndexBuildConfig(corpus=corpus, out=out, factory=factory, show_progress=False)
    return build_index(config, encoder=encoder)


def test_build_then_search_round_trip(tmp_path: Path, tiny_corpus: Path, tiny_encoder) -> None:
    out = tmp_path / "index"
    stats = build(tiny_corpus, out, tiny_encoder)
    assert stats.manifest.count == 4
    assert stats.manifest.dimension == tiny_encoder.dim
    searcher = Searcher(IndexReader.open(out), tiny_encoder)
    # A document's own text is its nearest neighbour.
    hits = searcher.search(["Photosynthesis converts light into chemical energy."], k=4)[0]
    assert hits[0].document.id == "d4"
    assert hits[0].document.metadata == {"lang": "en"}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_failed_rebuild_keeps_the_last_good_index(
    tmp_path: Path, tiny_corpus: Path, tiny_encoder
) -> None:
    out = tmp_path / "index"
    first = build(tiny_corpus, out, tiny_encoder).manifest
    bad = tmp_path / "bad.jsonl"
    bad.write_text(tiny_corpus.read_text() + "{not json}\n")
    with pytest.raises(MalformedInputError, match=r"bad\.jsonl:5"):
        build(bad, out, tiny_encoder)
    assert Manifest.load(out).generation == first.generation
    reader = IndexReader.open(out)
    assert len(reader.vectors) == 4
    # The next good build replaces the index and sweeps the interrupted build's files.
    second = build(tiny_corpus, out, tiny_encoder).manifest
    names = {p.name for p in out.iterdir()}
    assert second.docstore_file in names and first.docstore_file not in names
    assert len([n for n in names if n.startswith("docstore-") and n.endswith(".sqlite")]) == 1


def test_corrupt_vectors_file_is_detected(tmp_path: Path, tiny_corpus: Path, tiny_encoder) -> None:
    out = tmp_path / "index"
    manifest = build(tiny_corpus, out, tiny_encoder).manifest
    with (out / manifest.vectors_file).open("ab") as handle:
        handle.write(b"garbage")
    with pytest.raises(IndexCorruptError, match="checksum"):
        IndexReader.open(out)


def test_unreadable_manifest_and_missing_index(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a Loupe index"):
        IndexReader.open(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"model": "x"}))
    with pytest.raises(IndexCorruptError):
        IndexReader.open(tmp_path)


def test_empty_corpus_is_an_error(tmp_path: Path, tiny_encoder) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="no documents"):
        build(empty, tmp_path / "index", tiny_encoder)


def test_bm25_first_stage(tmp_path: Path, tiny_corpus: Path, tiny_encoder) -> None:
    config = IndexBuildConfig(
        corpus=tiny_corpus, out=tmp_path / "index", bm25=True, show_progress=False
    )
    build_index(config, encoder=tiny_encoder)
    searcher = Searcher(IndexReader.open(tmp_path / "index"), tiny_encoder)
    hits = searcher.search(["stock market", "photosynthesis light"], k=3, first_stage="bm25")
    assert hits[0][0].document.id == "d2" and len(hits[0]) == 1  # only d2 shares a term
    assert hits[1][0].document.id == "d4"
    with pytest.raises(ValueError, match="unknown first stage"):
        searcher.search(["x"], first_stage="sparse")


def test_an_ivf_index_trains_on_a_sample_read_back_from_the_docstore(
    tmp_path: Path, tiny_encoder
) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"_id": f"d{i}", "text": f"document number {i} about topic {i % 7}"}) + "\n"
            for i in range(64)
        )
    )
    stats = build(corpus, tmp_path / "index", tiny_encoder, factory="IVF4,Flat")
    assert stats.manifest.count == 64
    reader = IndexReader.open(tmp_path / "index")
    reader.vectors.set_search_params(nprobe=4)  # every list: exact
    searcher = Searcher(reader, tiny_encoder)
    hits = searcher.search(["document number 17 about topic 3"], k=3)[0]
    assert hits[0].document.id == "d17"
