"""``loupe index build --expand N``: generated queries reach the first stage, not the text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from index.builder import IndexBuildConfig, build_index, indexed_text
from index.readers import read_corpus
from index.records import Document
from index.searcher import IndexReader
from models.doc2query import ExpansionConfig
from models.gmlm import GenerativeMaskedLM, GmlmConfig


def test_expanded_build_stores_queries_and_encodes_the_expansion(
    tmp_path: Path, tiny_corpus: Path, tiny_encoder, tiny_model_dir: Path
) -> None:
    torch.manual_seed(0)
    model = GenerativeMaskedLM(GmlmConfig(backbone=str(tiny_model_dir), max_target_length=6))
    generator = model.save(tmp_path / "gmlm")
    expansion = ExpansionConfig(str(generator), queries_per_document=2, iterations=2)
    out = tmp_path / "index"
    config = IndexBuildConfig(
        corpus=tiny_corpus, out=out, show_progress=False, expansion=expansion, bm25=True
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
        expected = tiny_encoder.encode([indexed_text(document)])[0]
        np.testing.assert_allclose(vector, expected, atol=1e-5)


def test_indexed_text_appends_the_queries() -> None:
    doc = Document("d", "Cats purr.", "Cats", {"doc2query": ["why do cats purr"]})
    assert indexed_text(doc) == "Cats Cats purr. why do cats purr"
    assert indexed_text(Document("e", "plain")) == "plain"
