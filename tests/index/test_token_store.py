from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.builder import IndexBuildConfig, build_index
from index.rerank import rerank_hits_many, stored_fraction
from index.searcher import IndexReader, Searcher
from index.token_quantization import TokenDtype
from index.token_store import TokenStore, write_token_store
from models.late_interaction import LateInteractionConfig, LateInteractionModel
from models.late_reranker import LateInteractionReranker
from models.lite import ScorerConfig


def test_round_trip_by_key(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    matrices = [rng.normal(size=(n, 4)).astype(np.float16) for n in (3, 1, 5)]
    store = write_token_store(tmp_path / "tokens-x", [30, 10, 20], matrices, dim=4)
    reopened = TokenStore(tmp_path / "tokens-x")
    got = reopened.get([10, 99, 30, 20])
    np.testing.assert_array_equal(got[0], matrices[1])
    assert got[1] is None
    np.testing.assert_array_equal(got[2], matrices[0])
    np.testing.assert_array_equal(got[3], matrices[2])
    assert 20 in store and 11 not in store and len(store) == 3


@pytest.mark.parametrize(
    ("dtype", "bytes_per_token", "tolerance"),
    [(TokenDtype.int8, 8 + 2, 0.01), (TokenDtype.int4, 4 + 2, 0.08)],
)
def test_quantized_round_trip_is_close_and_small(
    tmp_path: Path, dtype: TokenDtype, bytes_per_token: int, tolerance: float
) -> None:
    rng = np.random.default_rng(0)
    matrices = [rng.normal(size=(n, 8)) for n in (3, 1, 5)]
    matrices = [(m / np.linalg.norm(m, axis=1, keepdims=True)).astype(np.float16) for m in matrices]
    write_token_store(tmp_path / "q", [30, 10, 20], matrices, dim=8, dtype=dtype)
    store = TokenStore(tmp_path / "q")
    assert store.dtype is dtype and store.meta["dtype"] == dtype.value
    got = store.get([20, 7, 10, 30])
    assert got[1] is None
    for stored, original in zip(
        [got[0], got[2], got[3]], [matrices[2], matrices[1], matrices[0]], strict=True
    ):
        assert stored is not None and stored.dtype == np.float32
        assert stored.shape == original.shape
        assert np.abs(stored.astype(np.float32) - original).max() <= tolerance
    tokens = sum(len(m) for m in matrices)
    assert dtype.bytes_per_token(8) == bytes_per_token
    data = sum(
        (tmp_path / "q" / name).stat().st_size
        for name in ("tokens.i8", "tokens.i4", "scales.f16")
        if (tmp_path / "q" / name).exists()
    )
    assert data == tokens * bytes_per_token


def test_quantized_store_rejects_a_truncated_scales_file(tmp_path: Path) -> None:
    write_token_store(tmp_path / "s", [1], [np.ones((2, 4))], dim=4, dtype=TokenDtype.int8)
    scales = tmp_path / "s" / "scales.f16"
    scales.write_bytes(scales.read_bytes()[:-2])
    with pytest.raises(ValueError, match="bytes"):
        TokenStore(tmp_path / "s")


def test_store_written_before_dtypes_reads_as_float16(tmp_path: Path) -> None:
    import json

    matrix = np.arange(8, dtype=np.float16).reshape(2, 4)
    write_token_store(tmp_path / "old", [5], [matrix], dim=4)
    meta_path = tmp_path / "old" / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["dtype"]
    meta_path.write_text(json.dumps(meta))
    got = TokenStore(tmp_path / "old").get([5])[0]
    assert got is not None
    np.testing.assert_array_equal(got, matrix)


def test_rejects_bad_shapes_duplicates_and_truncated_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="matrix"):
        write_token_store(tmp_path / "a", [1], [np.zeros((2, 3))], dim=4)
    with pytest.raises(ValueError, match="twice"):
        write_token_store(tmp_path / "b", [1, 1], [np.zeros((2, 4))] * 2, dim=4)
    write_token_store(tmp_path / "c", [1], [np.zeros((2, 4))], dim=4)
    with (tmp_path / "c" / "tokens.f16").open("ab") as handle:
        handle.write(b"xx")
    with pytest.raises(ValueError, match="bytes"):
        TokenStore(tmp_path / "c")


@pytest.mark.parametrize(
    ("dtype", "tolerance"),
    [(TokenDtype.float16, 5e-3), (TokenDtype.int8, 2e-2), (TokenDtype.int4, 0.2)],
)
def test_index_with_token_store_reranks_without_encoding(
    tmp_path: Path, tiny_corpus: Path, tiny_encoder, dtype: TokenDtype, tolerance: float
) -> None:
    lite = LateInteractionModel(
        LateInteractionConfig(
            dim=8, q_len=8, d_len=16, scorer=ScorerConfig(kind="sorted", q_len=8, d_len=16, top_k=4)
        ),
        tiny_encoder,
    )
    lite_dir = lite.save(tmp_path / "lite")
    build_index(
        IndexBuildConfig(
            corpus=tiny_corpus,
            out=tmp_path / "index",
            token_store=True,
            reranker=str(lite_dir),
            token_dtype=dtype,
            show_progress=False,
        ),
        encoder=tiny_encoder,
    )
    reader = IndexReader.open(tmp_path / "index")
    assert reader.tokens is not None and len(reader.tokens) == 4
    assert reader.tokens.dtype is dtype
    reranker = LateInteractionReranker(LateInteractionModel.load(lite_dir, device="cpu"))
    hits = Searcher(reader, tiny_encoder).search(["cats and dogs"], k=4)[0]
    assert stored_fraction(reranker, reader, hits) == 1.0
    from_store = rerank_hits_many(reranker, reader, ["cats and dogs"], [hits])[0]
    encoded = reranker.score("cats and dogs", [h.document.full_text for h in hits])
    np.testing.assert_allclose(from_store, encoded, atol=tolerance)
    # Another model's fingerprint: the store is not used, texts are encoded instead.
    assert reader.token_matrices([hits[0].key], "another-model") == [None]


def test_documents_added_live_keep_their_token_matrices(tmp_path: Path) -> None:
    from index.live import LiveIndex
    from index.records import Document

    live = LiveIndex.open_or_create(tmp_path / "live", model="m", dimension=4)
    assert live.token_dtype is TokenDtype.int8  # no build-time store: the build default
    eye = np.eye(4, dtype=np.float32)
    rng = np.random.default_rng(0)
    matrices = [rng.normal(size=(n, 3)).astype(np.float16) for n in (2, 5)]
    keys = live.add([Document("a", "x"), Document("b", "y")], eye[:2], matrices, "fp-1")
    live.close()
    reader = IndexReader.open(tmp_path / "live")
    got = reader.token_matrices(keys, "fp-1")
    for stored, original in zip(got, matrices, strict=True):
        assert stored is not None and stored.shape == original.shape
        # int8: each value within half a step (max |row| / 127 / 2) of the original.
        step = np.abs(original.astype(np.float32)).max(axis=1, keepdims=True) / 127
        assert (np.abs(stored - original) <= step * 0.51 + 1e-3).all()
    assert reader.token_matrices(keys, "other") == [None, None]
    reader.docstore.delete("a")
    assert reader.token_matrices(keys, "fp-1")[0] is None


def test_hit_rates_report_what_came_from_storage(tmp_path: Path, tiny_encoder) -> None:
    from index.live import LiveIndex
    from index.records import Document

    lite = LateInteractionModel(
        LateInteractionConfig(
            dim=8, q_len=8, d_len=16, scorer=ScorerConfig(kind="maxsim", q_len=8, d_len=16)
        ),
        tiny_encoder,
    )
    reranker = LateInteractionReranker(
        LateInteractionModel.load(lite.save(tmp_path / "m"), device="cpu")
    )
    live = LiveIndex.open_or_create(tmp_path / "live", model="m", dimension=tiny_encoder.dim)
    docs = [Document("a", "cats purr"), Document("b", "dogs bark")]
    texts = [d.text for d in docs]
    live.add(
        docs[:1],
        tiny_encoder.encode(texts[:1]),
        reranker.model.document_matrices(texts[:1]),
        reranker.model.fingerprint,
    )
    live.add(docs[1:], tiny_encoder.encode(texts[1:]))  # no token matrix stored
    hits = live.search_vectors(tiny_encoder.encode(["cats"]), k=2)
    rates: list[float] = []
    scores = rerank_hits_many(reranker, live.reader, ["cats"], hits, hit_rates=rates)[0]
    assert rates == [0.5]
    np.testing.assert_allclose(
        scores, reranker.score("cats", [h.document.text for h in hits[0]]), atol=5e-3
    )


@pytest.mark.parametrize("dtype", list(TokenDtype))
def test_docstore_keeps_token_matrices_in_each_dtype(tmp_path: Path, dtype: TokenDtype) -> None:
    from index.docstore import DocStore
    from index.records import Document

    matrix = np.random.default_rng(1).normal(size=(4, 7)).astype(np.float16)
    with DocStore(tmp_path / "d.sqlite") as store:
        (key,), _ = store.upsert([Document("a", "x")], None, [matrix], "fp", dtype)
    with DocStore(tmp_path / "d.sqlite", read_only=True) as store:
        got = store.get_tokens([key], "fp")[key]
    tolerance = {TokenDtype.float16: 0.0, TokenDtype.int8: 0.02, TokenDtype.int4: 0.3}[dtype]
    np.testing.assert_allclose(got, matrix, atol=tolerance)


def test_docstore_from_before_token_dtypes_still_reads_and_upgrades(tmp_path: Path) -> None:
    """A docstore whose tokens table has no dtype/scales columns: read-only it reads its
    float16 rows as they are; opened for writing it gains the columns and keeps them."""
    import sqlite3

    from index.docstore import DocStore
    from index.records import Document

    path = tmp_path / "old.sqlite"
    old = np.arange(6, dtype=np.float16).reshape(2, 3)
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE documents (key INTEGER PRIMARY KEY AUTOINCREMENT,"
            " doc_id TEXT NOT NULL UNIQUE, title TEXT NOT NULL DEFAULT '', text TEXT NOT NULL,"
            " metadata TEXT NOT NULL DEFAULT '{}', vector BLOB);"
            "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "CREATE TABLE tokens (key INTEGER PRIMARY KEY, fingerprint TEXT NOT NULL,"
            " dim INTEGER NOT NULL, data BLOB NOT NULL);"
        )
        conn.execute("INSERT INTO documents (doc_id, text) VALUES ('a', 'x')")
        conn.execute("INSERT INTO tokens VALUES (1, 'fp', 3, ?)", (old.tobytes(),))
    with DocStore(path, read_only=True) as store:
        np.testing.assert_array_equal(store.get_tokens([1], "fp")[1], old)
    with DocStore(path) as store:
        (key,), _ = store.upsert([Document("b", "y")], None, [old], "fp", TokenDtype.int4)
        got = store.get_tokens([1, key], "fp")
    np.testing.assert_array_equal(got[1], old)
    np.testing.assert_allclose(got[key], old, atol=0.5 * 5 / 7 + 1e-3)
