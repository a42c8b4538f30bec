"""The Qdrant backend, against qdrant-client's embedded mode (no server needed): the same
answers as FAISS, index builds and live writes through it, and what a rebuild leaves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from evaluation.jobs import EvalConfig, config_record
from index.builder import IndexBuildConfig, build_index
from index.errors import IndexCorruptError, VectorStoreUnavailableError
from index.faiss_index import FaissIndex
from index.live import LiveIndex
from index.manifest import Manifest
from index.metadata_filter import MetadataFilter
from index.qdrant_index import QdrantIndex, QdrantTarget, target_for
from index.records import Document
from index.searcher import IndexReader, Searcher
from tests.index.vectors import ranked_documents

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


def new_live(tmp_path: Path, dimension: int = 4) -> tuple[Path, QdrantTarget, LiveIndex]:
    """An empty index folder whose vectors go to an embedded Qdrant beside it: the folder,
    the Qdrant target and the index, open."""
    folder, target = tmp_path / "index", QdrantTarget(str(tmp_path / "qdrant"))
    live = LiveIndex.open_or_create(folder, model="m", dimension=dimension, qdrant=target)
    return folder, target, live


@contextmanager
def reopened(folder: Path, target: QdrantTarget) -> Iterator[tuple[LiveIndex, QdrantIndex]]:
    """The index in ``folder`` opened writable again (catching up what its snapshot lacks),
    with its Qdrant index."""
    live = LiveIndex.open(folder, qdrant=target)
    try:
        assert isinstance(live.reader.vectors, QdrantIndex)
        yield live, live.reader.vectors
    finally:
        live.close()


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
    tmp_path: Path, tiny_corpus: Path, tiny_encoder, monkeypatch: pytest.MonkeyPatch
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
        # the build gave each point its document's metadata: Qdrant filters by payload
        import index.searcher

        monkeypatch.setattr(index.searcher, "EXACT_FILTER_LIMIT", 0)
        monkeypatch.setattr(QdrantIndex, "search_among", None)  # not by key
        where = MetadataFilter.from_mapping({"lang": "en"})
        (hits,) = with_qdrant.search(["cats"], k=4, where=where)
        assert [h.document.id for h in hits] == ["d4"]
    finally:
        with_qdrant.reader.close()
        with_faiss.reader.close()

    rebuilt = build_index(IndexBuildConfig(**{**config.__dict__, "qdrant": target}), tiny_encoder)
    # the rebuild writes a new collection and drops the one it replaced
    assert rebuilt.manifest.qdrant_collection != manifest.qdrant_collection
    assert collections(tmp_path / "qdrant") == {rebuilt.manifest.qdrant_collection}


def test_a_build_drops_the_collection_an_interrupted_build_left(
    tmp_path: Path, tiny_corpus: Path, tiny_encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    import index.builder

    target = QdrantTarget(str(tmp_path / "qdrant"))
    config = IndexBuildConfig(
        corpus=tiny_corpus, out=tmp_path / "q", show_progress=False, qdrant=target
    )
    first = build_index(config, tiny_encoder).manifest
    real_upload = index.builder.upload_stored_vectors

    def upload_then_crash(*args: object, **kwargs: object) -> QdrantIndex:
        real_upload(*args, **kwargs).close()  # type: ignore[arg-type]
        raise KeyboardInterrupt

    monkeypatch.setattr(index.builder, "upload_stored_vectors", upload_then_crash)
    with pytest.raises(KeyboardInterrupt):
        build_index(config, tiny_encoder)
    monkeypatch.undo()
    left = collections(tmp_path / "qdrant") - {first.qdrant_collection}
    assert len(left) == 1, "the interrupted build left a collection"
    rebuilt = build_index(config, tiny_encoder).manifest
    assert collections(tmp_path / "qdrant") == {rebuilt.qdrant_collection}
    assert [p.name for p in (tmp_path / "q").glob("docstore-*.sqlite")] == [rebuilt.docstore_file]


def test_qdrant_applies_numeric_ranges_and_leaves_string_ones_to_the_docstore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import index.searcher

    _, _, live = new_live(tmp_path, dimension=8)
    vectors = np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    years = range(2018, 2026)
    documents = [Document(f"y{y}", "t", metadata={"year": y, "date": f"{y}-06-01"}) for y in years]
    live.add(documents, vectors)
    monkeypatch.setattr(index.searcher, "EXACT_FILTER_LIMIT", 0)
    sent: list[object] = []
    real_search = QdrantIndex.search_where

    def search_where(self: QdrantIndex, *args: object, **kwargs: object) -> object:
        found = real_search(self, *args, **kwargs)  # type: ignore[arg-type]
        if found is not None:  # Qdrant could say the filter
            sent.append(args)
        return found

    monkeypatch.setattr(QdrantIndex, "search_where", search_where)
    try:
        for given in ({"year": {"gte": 2022, "lt": 2025}}, {"date": {"gte": "2022", "lt": "2025"}}):
            where = MetadataFilter.from_mapping(given)
            (hits,) = live.search_vectors(vectors[:1], 8, where)
            assert sorted(h.document.id for h in hits) == ["y2022", "y2023", "y2024"]
        assert len(sent) == 1, "the numeric range went to Qdrant, the string one did not"
    finally:
        live.close()


def test_a_qdrant_build_takes_no_faiss_factory(tmp_path: Path, tiny_corpus: Path) -> None:
    with pytest.raises(ValueError, match="a Qdrant collection is HNSW"):
        IndexBuildConfig(corpus=tiny_corpus, out=tmp_path, factory="HNSW32", qdrant=MEMORY)


def test_live_writes_reach_qdrant_and_read_only_replicas_see_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _, live = new_live(tmp_path)
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
    folder, target, live = new_live(tmp_path)
    live.close()
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


def filtered_corpus() -> tuple[list[Document], np.ndarray]:
    """60 documents with metadata of every kind a filter compares, and 8-d vectors."""
    documents = []
    for i in range(60):
        metadata: dict[str, object] = {
            "lang": "en" if i % 2 else "de",
            "year": 2020 + i % 3 if i % 5 else float(2020 + i % 3),  # 2021 and 2021.0
            "flag": i % 4 == 0,
            "tag": ["a", "b"] if i % 6 == 0 else "a" if i % 3 == 0 else "c",
            "a.b": i % 2,
        }
        documents.append(Document(id=f"d{i}", text=f"text {i}", metadata=metadata))
    return documents, random_unit_vectors(60, 8, seed=3)


def test_filtered_searches_ask_qdrant_by_payload_and_agree_with_the_docstore(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filter Qdrant can say goes to Qdrant as a payload filter, not as a list of every
    passing key; where Qdrant's matching passes more (a value inside a list) or cannot say
    the filter (a field name with a dot), the search falls back to the keys. Either way the
    hits are the docstore's."""
    import index.searcher

    monkeypatch.setattr(index.searcher, "EXACT_FILTER_LIMIT", 0)  # through the vector index
    by_id: list[str] = []
    by_id_search = QdrantIndex.search_among

    def counting(self: QdrantIndex, *args: object) -> tuple[np.ndarray, np.ndarray]:
        by_id.append("called")
        return by_id_search(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(QdrantIndex, "search_among", counting)
    documents, vectors = filtered_corpus()
    live = LiveIndex.open_or_create(
        tmp_path / "index", model="m", dimension=8, qdrant=QdrantTarget(str(tmp_path / "q"))
    )
    live.add(documents, vectors)
    list_tagged = next(i for i, d in enumerate(documents) if isinstance(d.metadata["tag"], list))
    try:
        cases: list[tuple[dict[str, object], bool]] = [
            ({"lang": "en"}, False),
            ({"year": 2021}, False),  # 2021.0 passes too
            ({"flag": True, "lang": ["en", "de"]}, False),
            ({"year": [2020, 2022], "flag": False}, False),
            ({"tag": "a"}, True),  # Qdrant also passes ["a", "b"]: hits checked, then by key
            ({"a.b": 1}, True),  # a path to Qdrant: by key
        ]
        for mapping, falls_back in cases:
            where = MetadataFilter.from_mapping(mapping)
            # for "tag", the query is a list-tagged document's own vector: Qdrant's best hit
            query = vectors[list_tagged][None] if "tag" in mapping else vectors[:1] * -1
            passing = [i for i, d in enumerate(documents) if where.matches(d.metadata)]
            order = sorted(passing, key=lambda i: -float(vectors[i] @ query[0]))
            by_id.clear()
            (hits,) = live.search_vectors(query, 5, where)
            assert [h.document.id for h in hits] == [documents[i].id for i in order[:5]]
            assert bool(by_id) == falls_back, mapping
    finally:
        live.close()


def test_documents_caught_up_after_a_crash_keep_their_payload(tmp_path: Path) -> None:
    """Documents stored after the last snapshot whose points never reached Qdrant (a crash
    between the two writes) are upserted on the next writable open, metadata and all."""
    documents, vectors = filtered_corpus()
    folder, target, live = new_live(tmp_path, dimension=8)
    live.add(documents[:30], vectors[:30])
    live.snapshot()
    keys = live.add(documents[30:], vectors[30:])
    live.reader.vectors.remove(np.asarray(keys))  # as if the process died before the upsert
    live.close()

    with reopened(folder, target) as (_, qdrant):
        assert len(qdrant) == 60
        for key, document, vector in zip(keys, documents[30:], vectors[30:], strict=True):
            # found by its own payload: caught up with its metadata
            where = MetadataFilter.from_mapping({"lang": document.metadata["lang"]})
            found = qdrant.search_where(vector[None], 1, where)
            assert found is not None and int(found[1][0, 0]) == key


def test_an_unreachable_qdrant_fails_the_build_before_any_encoding(
    tmp_path: Path, tiny_corpus: Path
) -> None:
    from typer.testing import CliRunner

    from loupe.cli import app

    out = tmp_path / "index"
    unreachable = QdrantTarget("http://127.0.0.1:1")  # nothing listens on port 1
    config = IndexBuildConfig(corpus=tiny_corpus, out=out, show_progress=False, qdrant=unreachable)
    with pytest.raises(VectorStoreUnavailableError, match="cannot use Qdrant at http://127"):
        build_index(config, encoder=None)  # the encoder would load after the check
    assert not out.exists()
    arguments = ["index", "build", "--corpus", str(tiny_corpus), "--out", str(out)]
    result = CliRunner().invoke(app, [*arguments, "--qdrant-url", unreachable.location, "-q"])
    assert result.exit_code == 2
    assert "cannot use Qdrant" in result.output and "Traceback" not in result.output


class FailingCalls:
    """Makes a Qdrant client's ``name`` method raise while ``failing`` is set."""

    def __init__(self, index: QdrantIndex, name: str, monkeypatch: pytest.MonkeyPatch):
        self.failing = True
        client = index._client
        real = getattr(client, name)

        def call(*args: object, **kwargs: object) -> object:
            if self.failing:
                raise ConnectionError("qdrant is down")
            return real(*args, **kwargs)

        monkeypatch.setattr(client, name, call)


def write_b_while_qdrant_is_down(live: LiveIndex, monkeypatch: pytest.MonkeyPatch) -> FailingCalls:
    """Add document "a", then, with Qdrant's upserts failing, document "b" (metadata
    ``{"n": 1}``, vector ``e1``): the write fails; return the outage, still on."""
    live.add([Document(id="a", text="a")], np.eye(4)[:1])
    assert isinstance(live.reader.vectors, QdrantIndex)
    outage = FailingCalls(live.reader.vectors, "upsert", monkeypatch)
    with pytest.raises(VectorStoreUnavailableError, match="failed to store points"):
        live.add([Document(id="b", text="b", metadata={"n": 1})], np.eye(4)[1:2])
    return outage


def test_a_write_qdrant_missed_is_sent_again_at_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, live = new_live(tmp_path)
    outage = write_b_while_qdrant_is_down(live, monkeypatch)
    assert len(live) == 2 and len(live.reader.vectors) == 1  # stored, not yet in Qdrant
    outage.failing = False
    manifest = live.snapshot()
    assert len(live.reader.vectors) == 2 and manifest.max_key == live.docstore.max_key()
    (hits,) = live.search_vectors(np.eye(4)[1:2], 1)
    assert hits[0].document.id == "b"
    live.close()


def test_documents_qdrant_still_lacks_at_the_snapshot_are_caught_up_on_the_next_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, target, live = new_live(tmp_path)
    write_b_while_qdrant_is_down(live, monkeypatch)  # and down until the end
    manifest = live.snapshot()
    assert manifest.max_key < live.docstore.max_key()  # "b" stays after the snapshot
    live.close()
    monkeypatch.undo()

    with reopened(folder, target) as (live, qdrant):
        assert len(qdrant) == 2
        found = qdrant.search_where(np.eye(4)[1:2], 1, MetadataFilter.from_mapping({"n": 1}))
        assert found is not None and int(found[1][0, 0]) == live.docstore.max_key()


def test_a_qdrant_url_on_a_faiss_index_is_reported_not_used(
    tmp_path: Path, tiny_corpus: Path, tiny_encoder, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "index"
    build_index(IndexBuildConfig(corpus=tiny_corpus, out=out, show_progress=False), tiny_encoder)
    with caplog.at_level("WARNING", logger="index.searcher"):
        reader = IndexReader.open(out, qdrant=QdrantTarget(str(tmp_path / "qdrant")))
    try:
        assert len(reader.vectors) == 4 and not (tmp_path / "qdrant").exists()
        assert "keeps its vectors in a FAISS file" in caplog.text
    finally:
        reader.close()


def delete_while_qdrant_is_down(
    live: LiveIndex, monkeypatch: pytest.MonkeyPatch
) -> tuple[np.ndarray, FailingCalls]:
    """Add six documents (see ``ranked_documents``), then delete "0" and "1" with Qdrant's
    deletes failing: the delete succeeds and hides them from searches, filtered by Qdrant's
    payloads or not. Returns the query and the outage."""
    import index.searcher

    query = ranked_documents(live)
    assert isinstance(live.reader.vectors, QdrantIndex)
    outage = FailingCalls(live.reader.vectors, "delete", monkeypatch)
    assert live.delete_many(["0", "1"]) == ["0", "1"]
    assert len(live.reader.vectors) == 6  # Qdrant still holds them
    assert [h.document.id for h in live.search_vectors(query, k=3)[0]] == ["2", "3", "4"]
    with monkeypatch.context() as through_qdrant:
        through_qdrant.setattr(index.searcher, "EXACT_FILTER_LIMIT", 0)
        even = MetadataFilter.from_mapping({"n": "even"})
        assert [h.document.id for h in live.search_vectors(query, 2, even)[0]] == ["2", "4"]
    return query, outage


def test_a_delete_qdrant_missed_is_asked_again_at_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, live = new_live(tmp_path)
    query, outage = delete_while_qdrant_is_down(live, monkeypatch)
    live.snapshot()  # still down: they stay hidden and recorded
    assert len(live.docstore.removed_vector_keys()) == 2
    outage.failing = False
    live.snapshot()
    assert len(live.reader.vectors) == 4 and len(live.docstore.removed_vector_keys()) == 0
    assert [h.document.id for h in live.search_vectors(query, k=3)[0]] == ["2", "3", "4"]
    live.close()


def test_a_delete_qdrant_missed_before_a_crash_is_done_on_the_next_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, target, live = new_live(tmp_path)
    query, _ = delete_while_qdrant_is_down(live, monkeypatch)
    live.close()  # as if the process died, with no snapshot
    monkeypatch.undo()

    with reopened(folder, target) as (live, qdrant):
        assert len(qdrant) == 4 and len(live.docstore.removed_vector_keys()) == 0
        assert [h.document.id for h in live.search_vectors(query, k=3)[0]] == ["2", "3", "4"]
