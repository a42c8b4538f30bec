"""``loupe index build --expand N``: generated queries reach the first stage, not the text."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from index.builder import IndexBuildConfig, build_index
from index.lexical import LEXICAL_TABLE
from index.readers import read_corpus
from index.records import Document
from index.searcher import IndexReader
from models.doc2query import ExpansionConfig
from models.gmlm import GenerativeMaskedLM, GmlmConfig


@pytest.mark.parametrize("token_store", [False, True], ids=["vectors", "token store"])
def test_expanded_build_stores_queries_and_encodes_the_expansion(
    tmp_path: Path, tiny_corpus: Path, tiny_encoder, tiny_model_dir: Path, token_store: bool
) -> None:
    torch.manual_seed(0)
    model = GenerativeMaskedLM(GmlmConfig(backbone=str(tiny_model_dir), max_target_length=6))
    generator = model.save(tmp_path / "gmlm")
    expansion = ExpansionConfig(str(generator), queries_per_document=2, iterations=2)
    out = tmp_path / "index"
    config = IndexBuildConfig(
        corpus=tiny_corpus,
        out=out,
        show_progress=False,
        expansion=expansion,
        bm25=True,
        token_store=token_store,
        reranker=f"maxsim:{tiny_model_dir}",
    )
    stats = build_index(config, encoder=tiny_encoder)
    assert stats.manifest.count == 4
    originals = {d.id: d.text for d in read_corpus(tiny_corpus)}
    reader = IndexReader.open(out)
    keys, vectors = next(reader.docstore.iter_vectors())
    documents = reader.docstore.get_by_keys(keys.tolist())
    for key, vector in zip(keys.tolist(), vectors, strict=True):
        document = documents[key]
        queries = document.metadata["doc2query"]
        assert 1 <= len(queries) <= 2 and all(isinstance(q, str) and q for q in queries)
        assert document.text == originals[document.id], "the stored text stays the document's"
        expected = tiny_encoder.encode([document.first_stage_text])[0]
        np.testing.assert_allclose(vector, expected, atol=1e-5)
    if token_store:  # the re-ranker's matrices are of the document alone
        from models.registry import load_late_interaction

        late = load_late_interaction(f"maxsim:{tiny_model_dir}", share_encoder=tiny_encoder)
        assert reader.tokens is not None
        stored = reader.token_matrices(keys.tolist(), reader.tokens.meta["reranker_fingerprint"])
        own = late.document_matrices([documents[k].full_text for k in keys.tolist()])
        for matrix, expected_matrix in zip(stored, own, strict=True):
            assert matrix is not None and matrix.shape == expected_matrix.shape
            np.testing.assert_allclose(matrix, expected_matrix, atol=0.05)
    # the full-text index holds the queries in its expansion column
    with sqlite3.connect(reader.docstore.path) as db:
        for key in keys.tolist():
            word = documents[key].metadata["doc2query"][0].split()[0]
            matched = db.execute(
                f"SELECT rowid FROM {LEXICAL_TABLE} WHERE {LEXICAL_TABLE} MATCH ?",
                (f'expansion : "{word}"',),
            ).fetchall()
            assert key in {row[0] for row in matched}, word


def test_the_first_stage_text_appends_the_queries() -> None:
    doc = Document("d", "Cats purr.", "Cats", {"doc2query": ["why do cats purr"]})
    assert doc.first_stage_text == "Cats Cats purr. why do cats purr"
    assert Document("e", "plain").first_stage_text == "plain"
