from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

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


def test_a_factory_faiss_cannot_build_fails_before_any_encoding(
    tmp_path: Path, tiny_corpus: Path, tiny_encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_encoding(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("encoded before the factory was checked")

    monkeypatch.setattr(tiny_encoder, "encode", no_encoding)
    out = tmp_path / "index"
    config = IndexBuildConfig(corpus=tiny_corpus, out=out, factory="IVF8,Bogus")
    with pytest.raises(ValueError, match="invalid FAISS factory string 'IVF8,Bogus'"):
        build_index(config, encoder=tiny_encoder)
    assert not out.exists()


def test_an_ivf_with_too_many_lists_keeps_the_encoding_for_a_resume(
    tmp_path: Path, tiny_corpus: Path, tiny_encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "index"
    config = IndexBuildConfig(corpus=tiny_corpus, out=out, factory="IVF8,Flat", resume=True)
    with pytest.raises(ValueError, match=r"8 lists needs at least 8 training vectors.*--resume"):
        build_index(config, encoder=tiny_encoder)

    def no_encoding(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("encoded again")

    monkeypatch.setattr(tiny_encoder, "encode", no_encoding)
    stats = build_index(replace(config, factory="Flat"), encoder=tiny_encoder)
    assert stats.manifest.count == 4 and stats.resumed_after == 4


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


class Crash(Exception):
    pass


def crash_on_call(monkeypatch: pytest.MonkeyPatch, target: Any, name: str, call: int) -> None:
    """Make ``target.name`` raise :class:`Crash` on its ``call``-th call."""
    original = getattr(target, name)
    calls = 0

    def failing(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == call:
            raise Crash
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, failing)


def _resume_case(tmp_path: Path, tiny_encoder) -> tuple[Path, Path]:
    """A 10-document corpus and a tiny late-interaction re-ranker for the token store."""
    from models.late_interaction import LateInteractionConfig, LateInteractionModel
    from models.lite import ScorerConfig

    corpus = tmp_path / "corpus.jsonl"
    topics = ["cats", "stocks", "rain", "piano", "bread", "rockets", "tea", "chess", "moss", "ink"]
    corpus.write_text(
        "".join(
            json.dumps({"_id": f"d{i}", "text": f"{t} facts and {t} stories, number {i}"}) + "\n"
            for i, t in enumerate(topics)
        )
    )
    lite = LateInteractionModel(
        LateInteractionConfig(dim=8, q_len=8, d_len=16, scorer=ScorerConfig(q_len=8, d_len=16)),
        tiny_encoder,
    )
    return corpus, lite.save(tmp_path / "lite")


def _resume_config(corpus: Path, out: Path, reranker: Path, resume: bool) -> IndexBuildConfig:
    return IndexBuildConfig(
        corpus=corpus,
        out=out,
        chunk_size=3,
        token_store=True,
        reranker=str(reranker),
        bm25=True,
        show_progress=False,
        resume=resume,
    )


def _index_contents(out: Path) -> dict[str, tuple[Any, ...]]:
    """Each document's id: its stored text, vector and token matrix (and the token store
    holds no other matrix)."""
    reader = IndexReader.open(out)
    assert reader.tokens is not None
    contents = {}
    for batch in reader.docstore.iter_documents():
        for stored in batch:
            vector = reader.docstore.vectors_for_keys([stored.key])[1][0]
            matrix = reader.tokens.get([stored.key])[0]
            assert matrix is not None
            contents[stored.document.id] = (
                stored.document.text,
                vector.tolist(),
                matrix.tolist(),
            )
    assert len(reader.vectors) == len(reader.tokens) == len(contents)
    return contents


@pytest.mark.parametrize("crash_in", ["encoding", "token store", "progress"])
def test_an_interrupted_build_resumes_to_the_index_an_uninterrupted_one_writes(
    tmp_path: Path, tiny_encoder, monkeypatch, crash_in: str
) -> None:
    """Crashed in the third of four chunks (while encoding it, after its documents were
    stored, or after its token matrices were checkpointed but before the build's progress
    was), ``resume`` goes on from the second chunk's checkpoint:
    each document is stored once, with the vector and token matrix a whole build gives it;
    BM25 and the FAISS index hold every document."""
    from index.token_store import TokenStoreWriter

    corpus, reranker = _resume_case(tmp_path, tiny_encoder)
    whole = build_index(
        _resume_config(corpus, tmp_path / "whole", reranker, False), encoder=tiny_encoder
    )
    out = tmp_path / "resumed"
    if crash_in == "encoding":
        crash_on_call(monkeypatch, tiny_encoder, "encode_tokens", 3)  # the third chunk
    elif crash_in == "progress":
        from index.builder import BUILD_PROGRESS_META
        from index.docstore import DocStore

        original_meta = DocStore.set_meta

        def failing_meta(self: DocStore, name: str, value: Any) -> None:
            if name == BUILD_PROGRESS_META and value["documents"] == 9:
                raise Crash
            original_meta(self, name, value)

        monkeypatch.setattr(DocStore, "set_meta", failing_meta)
    else:  # the third chunk's second document: the chunk's rows are stored
        crash_on_call(monkeypatch, TokenStoreWriter, "add", 8)
    with pytest.raises(Crash):
        build_index(_resume_config(corpus, out, reranker, False), encoder=tiny_encoder)
    monkeypatch.undo()
    assert not (out / "manifest.json").exists()

    encoded: list[int] = []
    original_encode = tiny_encoder.encode_tokens

    def counting(texts: Any, *args: Any, **kwargs: Any) -> Any:
        encoded.append(len(texts))
        return original_encode(texts, *args, **kwargs)

    monkeypatch.setattr(tiny_encoder, "encode_tokens", counting)
    resumed = build_index(_resume_config(corpus, out, reranker, True), encoder=tiny_encoder)
    monkeypatch.undo()
    assert encoded == [3, 1]  # the last two chunks only
    assert resumed.resumed_after == 6
    assert resumed.manifest.count == whole.manifest.count == 10
    assert _index_contents(out) == _index_contents(tmp_path / "whole")
    hits = Searcher(IndexReader.open(out), tiny_encoder).search(["piano stories"], 1, "bm25")
    assert hits[0][0].document.id == "d3"
    assert [p.name for p in out.glob("docstore-*.sqlite")] == [resumed.manifest.docstore_file]


@pytest.mark.parametrize("change", ["a document added", "a word changed, same size"])
def test_resume_starts_over_for_a_changed_corpus(
    tmp_path: Path, tiny_encoder, monkeypatch, change: str
) -> None:
    import os

    corpus, reranker = _resume_case(tmp_path, tiny_encoder)
    out = tmp_path / "index"
    crash_on_call(monkeypatch, tiny_encoder, "encode_tokens", 2)
    with pytest.raises(Crash):
        build_index(_resume_config(corpus, out, reranker, False), encoder=tiny_encoder)
    monkeypatch.undo()
    before = corpus.stat()
    if change == "a document added":
        corpus.write_text(corpus.read_text() + json.dumps({"_id": "d10", "text": "new"}) + "\n")
    else:
        corpus.write_text(corpus.read_text().replace("cats facts", "bats facts"))
        os.utime(corpus, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
        assert corpus.stat().st_size == before.st_size
    rebuilt = build_index(_resume_config(corpus, out, reranker, True), encoder=tiny_encoder)
    assert rebuilt.resumed_after == 0
    contents = _index_contents(out)
    assert rebuilt.manifest.count == len(contents) == len(corpus.read_text().splitlines())
    assert contents["d0"][0].startswith("cats" if change == "a document added" else "bats")


def test_searcher_open_reads_without_writing(
    tmp_path: Path, tiny_corpus: Path, tiny_model_dir
) -> None:
    """``loupe search`` and ``loupe eval`` open an index read-only: they search it, and the
    docstore refuses a write (so a reader takes no write lock from a service on the folder)."""
    import sqlite3

    from index.records import Document

    config = IndexBuildConfig(
        corpus=tiny_corpus, out=tmp_path / "index", model=str(tiny_model_dir), show_progress=False
    )
    build_index(config)
    searcher = Searcher.open(tmp_path / "index", device="cpu")
    hits = searcher.search(["Photosynthesis converts light into chemical energy."], k=1)[0]
    assert hits[0].document.id == "d4"
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        searcher.reader.docstore.upsert([Document("new", "text")])
