"""The lexical first stage (the docstore's full-text index) and the hybrid one: dense and
lexical top-k lists fused by reciprocal rank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index.docstore import DocStore
from index.faiss_index import FaissIndex
from index.fusion import RRF_K
from index.manifest import Manifest
from index.metadata_filter import MetadataFilter
from index.records import Document
from index.searcher import IndexReader

TEXTS = [
    "zebra stripes in the savanna",  # the only lexical match for "zebra"
    "a quiet afternoon by the river",
    "river boats and river fish",
    "mountains under snow",
]


def reader_with(tmp_path: Path, vectors: np.ndarray) -> IndexReader:
    store = DocStore(tmp_path / "d.sqlite")
    keys, _ = store.upsert([Document(str(i), t) for i, t in enumerate(TEXTS)], vectors)
    dense = FaissIndex.create(vectors.shape[1], "Flat", use_gpu=False)
    dense.add(np.asarray(keys), vectors)
    manifest = Manifest("m", vectors.shape[1], len(keys), "Flat", "v", "", "d", max(keys), "g")
    return IndexReader(tmp_path, manifest, store, dense)


def test_hybrid_keeps_what_either_first_stage_finds_and_fuses_by_rank(tmp_path: Path) -> None:
    vectors = np.eye(4, dtype=np.float32)
    reader = reader_with(tmp_path, vectors)
    query = np.array([[0.0, 0.9, 0.0, 0.5]], dtype=np.float32)  # dense: 1, then 3
    dense = [h.document.id for h in reader.search_vectors(query, 2)[0]]
    lexical = [h.document.id for h in reader.search_lexical(["zebra river"], 2)[0]]
    hits = reader.search_hybrid(query, ["zebra river"], 2)[0]
    assert dense == ["1", "3"] and set(lexical) == {"0", "2"}
    # each list's first (1 dense, the full-text index's first) ties at 1/(k+1)
    assert {h.document.id for h in hits} == {"1", lexical[0]}
    assert [h.score for h in hits] == [1 / (RRF_K + 1)] * 2
    three = reader.search_hybrid(query, ["zebra river"], 4)[0]
    assert {h.document.id for h in three} == {"0", "1", "2", "3"}
    both = reader.search_hybrid(np.eye(4, dtype=np.float32)[:1], ["zebra"], 4)[0]
    assert both[0].document.id == "0" and both[0].score == 2 / (RRF_K + 1)


def test_search_first_stage_dispatches_to_each_first_stage(tmp_path: Path) -> None:
    vectors = np.eye(4, dtype=np.float32)
    reader = reader_with(tmp_path, vectors)
    query, text = np.array([[0.0, 0.9, 0.0, 0.5]], dtype=np.float32), ["zebra river"]
    assert reader.search_first_stage("dense", text, query, 3) == reader.search_vectors(query, 3)
    assert reader.search_first_stage("lexical", text, None, 3) == reader.search_lexical(text, 3)
    hybrid = reader.search_first_stage("hybrid", text, query, 3)
    assert hybrid == reader.search_hybrid(query, text, 3)
    where = MetadataFilter.from_mapping({"lang": "en"})
    with pytest.raises(ValueError, match="unknown first stage"):
        reader.search_first_stage("sparse", text, query, 3)
    with pytest.raises(ValueError, match="takes no metadata filter"):
        reader.search_first_stage("bm25", text, None, 3, where)
    with pytest.raises(ValueError, match="needs the queries' vectors"):
        reader.search_first_stage("hybrid", text, None, 3)
    with pytest.raises(ValueError, match="no BM25 index"):
        reader.search_first_stage("bm25", text, None, 3)
