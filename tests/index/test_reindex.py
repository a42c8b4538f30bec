"""``loupe index reindex``: the vector index rebuilt from the docstore's vectors, encoding
nothing: a corrupt file repaired, a new factory, HNSW's hidden deletes dropped, vectors moved
into Qdrant and back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient
from typer.testing import CliRunner

from index.builder import IndexBuildConfig, build_index
from index.errors import IndexCorruptError
from index.inspect import index_info
from index.live import LiveIndex
from index.manifest import Manifest, interrupted_generations
from index.qdrant_index import QdrantTarget
from index.records import Document
from index.reindex import reindex
from index.searcher import IndexReader
from tests.index.vectors import unit_vectors

N, DIM = 60, 8


def live_index(folder: Path, factory: str = "Flat") -> np.ndarray:
    """An index of N documents ("0", "1", ...) with random vectors, snapshot and closed;
    returns the vectors."""
    vectors = unit_vectors(N, DIM, seed=5)
    live = LiveIndex.open_or_create(folder, model="m", dimension=DIM, factory=factory)
    live.add([Document(str(i), f"text {i}", metadata={"n": i % 3}) for i in range(N)], vectors)
    live.snapshot()
    live.close()
    return vectors


def top_ids(folder: Path, queries: np.ndarray, k: int = 5, **open_args: object) -> list[list[str]]:
    reader = IndexReader.open(folder, read_only=True, **open_args)  # type: ignore[arg-type]
    try:
        return [[h.document.id for h in row] for row in reader.search_vectors(queries, k)]
    finally:
        reader.close()


def test_a_corrupt_vectors_file_is_rebuilt_from_the_docstore(
    tmp_path: Path, tiny_corpus: Path, tiny_encoder, tiny_model_dir: Path
) -> None:
    folder = tmp_path / "index"
    config = IndexBuildConfig(
        corpus=tiny_corpus,
        out=folder,
        show_progress=False,
        bm25=True,
        token_store=True,
        reranker=f"maxsim:{tiny_model_dir}",
    )
    built = build_index(config, encoder=tiny_encoder).manifest
    queries = tiny_encoder.encode(["cats", "stock market"])
    before = top_ids(folder, queries, 4)
    (folder / built.vectors_file).write_bytes(b"not a FAISS file")
    with pytest.raises(IndexCorruptError, match="checksum"):
        IndexReader.open(folder)

    done = reindex(folder)
    after = done.manifest
    assert after.generation != built.generation and after.count == built.count
    assert (after.factory, after.docstore_file) == ("Flat", built.docstore_file)
    assert (after.token_store_file, after.bm25_dir) == (built.token_store_file, built.bm25_dir)
    assert not (folder / built.vectors_file).exists()
    assert top_ids(folder, queries, 4) == before
    reader = IndexReader.open(folder, read_only=True)
    assert reader.tokens is not None and reader.bm25 is not None
    reader.close()


def test_a_new_factory_and_hnsw_deletes_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "index"
    vectors = live_index(folder, factory="HNSW8")
    live = LiveIndex.open(folder)
    live.delete_many([str(i) for i in range(0, N, 2)])  # HNSW only hides them
    live.snapshot()
    live.close()
    assert len(IndexReader.open(folder, read_only=True).hidden) == N // 2
    assert index_info(folder).hidden_vectors == N // 2
    with caplog.at_level("WARNING"):
        LiveIndex.open(folder, read_only=True).close()
    assert f"{N // 2} of the vector index's {N} vectors" in caplog.text
    assert "loupe index reindex" in caplog.text

    done = reindex(folder, factory="Flat")
    assert (done.previous.factory, done.manifest.factory) == ("HNSW8", "Flat")
    assert done.manifest.count == N // 2
    reader = IndexReader.open(folder, read_only=True)
    assert reader.hidden == set() and len(reader.vectors) == N // 2
    reader.close()
    assert index_info(folder).hidden_vectors == 0
    odd = [str(i) for i in range(1, N, 2)]
    exact = [
        [odd[j] for j in np.argsort(-(vectors[1::2] @ q), kind="stable")[:5]] for q in vectors[:3]
    ]
    assert top_ids(folder, vectors[:3]) == exact


def test_a_factory_faiss_cannot_build_changes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "index"
    live_index(folder)
    before = Manifest.load(folder)
    with pytest.raises(ValueError, match="invalid FAISS factory"):
        reindex(folder, factory="Bogus")
    assert Manifest.load(folder) == before


def test_vectors_move_into_qdrant_and_back(tmp_path: Path) -> None:
    folder, location = tmp_path / "index", tmp_path / "qdrant"
    vectors = live_index(folder)
    faiss_answer = top_ids(folder, vectors[:4])
    target = QdrantTarget(str(location))

    into = reindex(folder, qdrant=target).manifest
    assert into.vectors_backend == "qdrant" and into.vectors_file == ""
    assert top_ids(folder, vectors[:4], qdrant=target) == faiss_answer
    again = reindex(folder, qdrant=target).manifest  # a fresh collection; the old one goes
    assert again.qdrant_collection != into.qdrant_collection
    # the docstore keeps its build's generation in its name: not an interrupted build's
    assert again.generation not in again.docstore_file
    assert interrupted_generations(folder, {again.docstore_file}) == []

    back = reindex(folder, factory="Flat").manifest
    assert back.vectors_backend == "faiss" and back.factory == "Flat"
    assert top_ids(folder, vectors[:4]) == faiss_answer
    client = QdrantClient(path=str(location))
    try:
        assert client.get_collections().collections == []  # replaced collections deleted
    finally:
        client.close()


def test_the_command(tmp_path: Path) -> None:
    from loupe.cli import app

    folder = tmp_path / "index"
    live_index(folder)
    runner = CliRunner()
    result = runner.invoke(app, ["index", "reindex", "--index", str(folder), "--factory", "HNSW8"])
    assert result.exit_code == 0, result.output
    assert f"re-indexed {N} documents" in result.output and "Flat (faiss) -> HNSW8" in result.output
    missing = runner.invoke(app, ["index", "reindex", "--index", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "not a Loupe index" in missing.output
