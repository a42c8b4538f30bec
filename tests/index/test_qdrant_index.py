"""The Qdrant backend, against qdrant-client's embedded mode (no server needed): the same
answers as FAISS, index builds and live writes through it, and what a rebuild leaves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from evaluation.jobs import EvalConfig, config_record
from index.builder import IndexBuildConfig, build_index
from index.errors import IndexCorruptError
from index.faiss_index import FaissIndex
from index.live import LiveIndex
from index.manifest import Manifest
from index.qdrant_index import QdrantIndex, QdrantTarget, target_for
from index.records import Document
from index.searcher import IndexReader, Searcher

MEMORY = QdrantTarget(":memory:")


def random_unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def collections(location: Path) -> set[str]:
    client = QdrantClient(path=str(location))
    try:
        return {c.name for c in client.get_collections().collections}
    finally:
        client.close()


def test_qdrant_answers_as_flat_faiss_does() -> None:
    vectors = random_unit_vectors(300, 16, seed=0)
    keys = np.arange(10, 310, dtype=np.int64)
    queries = random_unit_vectors(5, 16, seed=1)
    qdrant = QdrantIndex.create(MEMORY, "c", 16)
    faiss = FaissIndex.create(16, "Flat", use_gpu=False)
    for index in (qdrant, faiss):
        index.add(keys, vectors)
    assert len(qdrant) == 300 and qdrant.dimension == 16
    q_scores, q_keys = qdrant.search(queries, 7)
    f_scores, f_keys = faiss.search(queries, 7)
    np.testing.assert_array_equal(q_keys, f_keys)
    np.testing.assert_allclose(q_scores, f_scores, atol=1e-5)

    allowed = keys[::3]
    q_scores, q_keys = qdrant.search_among(queries, 4, allowed)
    f_scores, f_keys = faiss.search_among(queries, 4, allowed)
    np.testing.assert_array_equal(q_keys, f_keys)
    assert set(q_keys.ravel()) <= set(allowed)

    gone = q_keys[:, 0]
    qdrant.remove(gone)
    assert not set(gone) & set(qdrant.search(queries, 7)[1].ravel())
    assert len(qdrant) == 300 - len(set(gone))


def test_short_answers_are_padded_and_upserts_replace() -> None:
    index = QdrantIndex.create(MEMORY, "c", 4)
    scores, keys = index.search(np.ones((2, 4)), 3)
    assert keys.tolist() == [[-1] * 3] * 2 and np.isneginf(scores).all()
    index.add(np.array([1, 2]), np.eye(4)[:2])
    index.add(np.array([1]), -np.eye(4)[:1])  # replaces key 1's vector
    scores, keys = index.search(np.eye(4)[:1], 3)
    assert keys.tolist() == [[2, 1, -1]]
    assert scores[0, :2].tolist() == [0.0, -1.0]
    assert index.search_among(np.eye(4)[:1], 2, np.array([], dtype=np.int64))[1].tolist() == [
        [-1, -1]
    ]
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        index.add(np.array([3]), np.ones((1, 5)))
    with pytest.raises(ValueError, match="k must be"):
        index.search(np.ones((1, 4)), 0)


def test_a_built_index_with_qdrant_vectors_searches_as_the_faiss_one(
    tmp_path: Path, tiny_corpus: Path, tiny_encoder
) -> None:
    target = QdrantTarget(str(tmp_path / "qdrant"))
    config = IndexBuildConfig(corpus=tiny_corpus, out=tmp_path / "q", show_progress=False)
    built = build_index(IndexBuildConfig(**{**config.__dict__, "qdrant": target}), tiny_encoder)
    build_index(IndexBuildConfig(**{**config.__dict__, "out": tmp_path / "f"}), tiny_encoder)
    manifest = built.manifest
    assert manifest.vectors_backend == "qdrant" and manifest.count == 4
    assert manifest.qdrant_location == target.location
    assert collections(tmp_path / "qdrant") == {manifest.qdrant_collection}
    assert not list((tmp_path / "q").glob("vectors-*"))

    queries = ["Dogs are loyal", "light and energy", "markets"]
    with_qdrant = Searcher.open(tmp_path / "q", model=str(tiny_encoder.model_name))
    with_faiss = Searcher.open(tmp_path / "f", model=str(tiny_encoder.model_name))
    try:
        answers = zip(
            with_qdrant.search(queries, k=4), with_faiss.search(queries, k=4), strict=True
        )
        for q, f in answers:
            assert [h.document.id for h in q] == [h.document.id for h in f]
            np.testing.assert_allclose([h.score for h in q], [h.score for h in f], atol=1e-5)
    finally:
        with_qdrant.reader.close()
        with_faiss.reader.close()

    rebuilt = build_index(IndexBuildConfig(**{**config.__dict__, "qdrant": target}), tiny_encoder)
    # the rebuild writes a new collection and drops the one it replaced
    assert rebuilt.manifest.qdrant_collection != manifest.qdrant_collection
    assert collections(tmp_path / "qdrant") == {rebuilt.manifest.qdrant_collection}


def test_a_qdrant_build_takes_no_faiss_factory(tmp_path: Path, tiny_corpus: Path) -> None:
    with pytest.raises(ValueError, match="a Qdrant collection is HNSW"):
        IndexBuildConfig(corpus=tiny_corpus, out=tmp_path, factory="HNSW32", qdrant=MEMORY)


def test_live_writes_reach_qdrant_and_read_only_replicas_see_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = QdrantTarget(str(tmp_path / "qdrant"))
    folder = tmp_path / "index"
    live = LiveIndex.open_or_create(folder, model="m", dimension=4, qdrant=target)
    documents = [Document(id=f"d{i}", text=f"text {i}") for i in range(3)]
    live.add(documents, np.eye(4)[:3])
    live.snapshot()
    live.add([Document(id="late", text="after the snapshot")], np.eye(4)[3:])
    assert live.delete("d1")
    live.close()  # no snapshot: "late" is after the manifest's max_key

    manifest = Manifest.load(folder)
    assert manifest.vectors_backend == "qdrant" and manifest.count == 3

    def no_writes(*args: object) -> None:
        raise AssertionError("a read-only replica wrote to Qdrant")

    monkeypatch.setattr(QdrantIndex, "add", no_writes)
    monkeypatch.setattr(QdrantIndex, "remove", no_writes)
    replica = LiveIndex.open(folder, read_only=True)
    try:
        assert len(replica.reader.vectors) == 3  # d0, d2, late: the writer's upserts
        hits = replica.search_vectors(np.eye(4)[[0, 2, 3]], k=1)
        assert [h[0].document.id for h in hits] == ["d0", "d2", "late"]
        (every,) = replica.search_vectors(np.eye(4)[1:2], k=4)
        assert sorted(h.document.id for h in every) == ["d0", "d2", "late"]
    finally:
        replica.close()


def test_a_missing_collection_is_a_corrupt_index(tmp_path: Path) -> None:
    target = QdrantTarget(str(tmp_path / "qdrant"))
    folder = tmp_path / "index"
    LiveIndex.open_or_create(folder, model="m", dimension=4, qdrant=target).close()
    manifest = Manifest.load(folder)
    client = QdrantClient(path=target.location)
    client.delete_collection(str(manifest.qdrant_collection))
    client.close()
    with pytest.raises(IndexCorruptError, match="no collection"):
        IndexReader.open(folder)


def test_commands_reach_qdrant_by_url_or_by_the_manifest_with_a_key(tmp_path: Path) -> None:
    folder = tmp_path / "index"
    location = str(tmp_path / "qdrant")
    LiveIndex.open_or_create(folder, model="m", dimension=4, qdrant=QdrantTarget(location)).close()
    assert target_for(folder, "http://qdrant:6333", "k") == QdrantTarget("http://qdrant:6333", "k")
    assert target_for(folder, None, "k") == QdrantTarget(location, "k")
    assert target_for(folder, None, None) is None  # as the manifest says, without a key
    assert target_for(tmp_path / "none", None, "k") is None
    assert "k" not in repr(QdrantTarget(location, "k"))


def test_an_evaluation_records_where_qdrant_is_but_never_its_key(tmp_path: Path) -> None:
    config = EvalConfig(
        queries=tmp_path / "q.tsv",
        qrels=tmp_path / "qrels",
        out=tmp_path / "out",
        index=tmp_path / "index",
        qdrant=QdrantTarget("https://qdrant.example:6333", "secret-key"),
    )
    record = config_record(config)
    assert record["qdrant"] == "https://qdrant.example:6333"
    assert "secret-key" not in json.dumps(record)
