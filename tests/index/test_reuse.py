"""A rebuild of the same folder takes unchanged documents' encodings from the index it
replaces, encoded the same way, and gives the index a build from scratch gives."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import index.builder
from index.builder import IndexBuildConfig, build_index
from index.searcher import IndexReader


def write_corpus(path: Path, texts: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in texts.items()))
    return path


FIRST = {
    "d1": "Cats are small domesticated felines.",
    "d2": "The stock market fell sharply on Monday.",
    "d3": "Dogs are loyal companions and good pets.",
    "d4": "Photosynthesis converts light into chemical energy.",
}
SECOND = {**FIRST, "d2": "The stock market rose on Tuesday.", "d5": "Tea is brewed from leaves."}


def first_build(
    tmp_path: Path, encoder: Any, model_dir: Path, token_store: bool
) -> IndexBuildConfig:
    """Build FIRST into ``tmp_path/index`` (with a MaxSim token store if asked); returns the
    build's config."""
    config = IndexBuildConfig(
        corpus=write_corpus(tmp_path / "first.jsonl", FIRST),
        out=tmp_path / "index",
        show_progress=False,
        token_store=token_store,
        reranker=f"maxsim:{model_dir}",
    )
    build_index(config, encoder=encoder)
    return config


def encodings(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Each document's stored vector and token matrix, by id."""
    reader = IndexReader.open(folder, read_only=True)
    try:
        keys, vectors = reader.docstore.vectors_for_keys(reader.docstore.all_keys())
        documents = reader.docstore.get_by_keys(keys.tolist())
        fingerprint = reader.tokens.meta["reranker_fingerprint"] if reader.tokens else None
        matrices = reader.token_matrices(keys.tolist(), str(fingerprint) if fingerprint else None)
        return {
            documents[int(k)].id: (v, m) for k, v, m in zip(keys, vectors, matrices, strict=True)
        }
    finally:
        reader.close()


@pytest.mark.parametrize("token_store", [False, True], ids=["vectors", "token store"])
def test_a_rebuild_encodes_only_what_changed(
    tmp_path: Path,
    tiny_encoder: Any,
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    token_store: bool,
) -> None:
    config = first_build(tmp_path, tiny_encoder, tiny_model_dir, token_store)
    out = config.out
    encoded: list[str] = []
    real_encode, real_chunk = tiny_encoder.encode, index.builder.encode_for_index

    def encode(texts: list[str], *args: Any, **kwargs: Any) -> Any:
        encoded.extend(texts)
        return real_encode(texts, *args, **kwargs)

    def encode_for_index(encoder: Any, model: Any, texts: list[str], **kwargs: Any) -> Any:
        encoded.extend(texts)
        return real_chunk(encoder, model, texts, **kwargs)

    monkeypatch.setattr(tiny_encoder, "encode", encode)
    monkeypatch.setattr(index.builder, "encode_for_index", encode_for_index)
    second = replace(config, corpus=write_corpus(tmp_path / "second.jsonl", SECOND))
    stats = build_index(second, encoder=tiny_encoder)
    assert stats.reused == 3 and stats.manifest.count == 5
    assert sorted(set(encoded)) == sorted([SECOND["d2"], SECOND["d5"]])
    monkeypatch.undo()

    scratch = tmp_path / "scratch"
    build_index(replace(second, out=scratch, reuse=False), encoder=tiny_encoder)
    got, want = encodings(out), encodings(scratch)
    assert set(got) == set(want) == set(SECOND)
    for doc_id, (vector, matrix) in want.items():
        np.testing.assert_allclose(got[doc_id][0], vector, atol=1e-6)
        if token_store:
            kept = got[doc_id][1]
            assert matrix is not None and kept is not None
            np.testing.assert_allclose(kept, matrix, atol=1e-6)


def test_an_index_encoded_otherwise_is_not_reused(tmp_path: Path, tiny_encoder: Any) -> None:
    from models.encoder import EncoderConfig, TextEncoder

    out = tmp_path / "index"
    corpus = write_corpus(tmp_path / "c.jsonl", FIRST)
    config = IndexBuildConfig(corpus=corpus, out=out, show_progress=False)
    build_index(config, encoder=tiny_encoder)
    shorter = TextEncoder(EncoderConfig(model=tiny_encoder.model_name, device="cpu", max_length=16))
    assert build_index(config, encoder=shorter).reused == 0
    assert build_index(config, encoder=shorter).reused == len(FIRST)
    assert build_index(replace(config, reuse=False), encoder=shorter).reused == 0


def test_documents_added_while_served_are_reused_too(
    tmp_path: Path, tiny_encoder: Any, tiny_model_dir: Path
) -> None:
    """Their matrices are in the docstore, not the token store the build wrote."""
    from index.live import LiveIndex
    from index.records import Document
    from models.registry import load_late_interaction

    config = first_build(tmp_path, tiny_encoder, tiny_model_dir, token_store=True)
    out = config.out
    late = load_late_interaction(f"maxsim:{tiny_model_dir}", share_encoder=tiny_encoder)
    live = LiveIndex.open(out)
    served = Document("d5", SECOND["d5"])
    live.add(
        [served],
        tiny_encoder.encode([served.text]),
        late.document_matrices([served.text]),
        late.fingerprint,
    )
    live.snapshot()
    live.close()

    stats = build_index(
        replace(config, corpus=write_corpus(tmp_path / "all.jsonl", {**FIRST, "d5": SECOND["d5"]})),
        encoder=tiny_encoder,
    )
    assert stats.reused == 5


def test_a_model_retrained_into_the_same_folder_is_not_reused(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    import shutil

    import torch
    from transformers import AutoModel

    from models.encoder import EncoderConfig, TextEncoder

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    config = IndexBuildConfig(
        corpus=write_corpus(tmp_path / "c.jsonl", FIRST),
        out=tmp_path / "index",
        show_progress=False,
    )

    def encoder() -> TextEncoder:
        return TextEncoder(EncoderConfig(model=str(folder), device="cpu"))

    build_index(config, encoder=encoder())
    assert build_index(config, encoder=encoder()).reused == len(FIRST)
    model = AutoModel.from_pretrained(folder)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)  # "retrained", saved where it was
    model.save_pretrained(folder)
    assert build_index(config, encoder=encoder()).reused == 0


def test_an_index_another_encoder_wrote_to_is_not_reused(tmp_path: Path, tiny_encoder: Any) -> None:
    from index.live import LiveIndex

    config = IndexBuildConfig(
        corpus=write_corpus(tmp_path / "c.jsonl", FIRST),
        out=tmp_path / "index",
        show_progress=False,
    )
    build_index(config, encoder=tiny_encoder)
    live = LiveIndex.open(config.out)
    live.note_writer("another encoder's weights")  # as a service with another encoder does
    live.close()
    assert build_index(config, encoder=tiny_encoder).reused == 0


def tiny_generator(folder: Path, model_dir: Path, seed: int = 0) -> Path:
    """An untrained GMLM over the tiny backbone, saved in ``folder``."""
    import torch

    from models.gmlm import GenerativeMaskedLM, GmlmConfig

    torch.manual_seed(seed)
    config = GmlmConfig(backbone=str(model_dir), max_target_length=6)
    return GenerativeMaskedLM(config).save(folder)


def stored_queries(folder: Path) -> dict[str, list[str]]:
    """Each document's ``doc2query`` metadata, by id."""
    reader = IndexReader.open(folder, read_only=True)
    try:
        documents = reader.docstore.get_by_keys(reader.docstore.all_keys())
        return {d.id: d.metadata["doc2query"] for d in documents.values()}
    finally:
        reader.close()


def test_a_rebuild_generates_queries_only_for_what_changed(
    tmp_path: Path, tiny_encoder: Any, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.doc2query import DocumentExpander, ExpansionConfig

    expansion = ExpansionConfig(str(tiny_generator(tmp_path / "gmlm", tiny_model_dir)), 2, 2)
    config = IndexBuildConfig(
        corpus=write_corpus(tmp_path / "first.jsonl", FIRST),
        out=tmp_path / "index",
        show_progress=False,
        expansion=expansion,
    )
    build_index(config, encoder=tiny_encoder)
    generated: list[str] = []
    real_queries = DocumentExpander.queries

    def queries(self: DocumentExpander, texts: list[str]) -> list[list[str]]:
        generated.extend(texts)
        return real_queries(self, texts)

    monkeypatch.setattr(DocumentExpander, "queries", queries)
    second = replace(config, corpus=write_corpus(tmp_path / "second.jsonl", SECOND))
    stats = build_index(second, encoder=tiny_encoder)
    assert sorted(generated) == sorted([SECOND["d2"], SECOND["d5"]])
    assert stats.expansions_reused == 3 and stats.reused == 3, "the same queries: same vectors"
    monkeypatch.undo()

    scratch = tmp_path / "scratch"
    build_index(replace(second, out=scratch, reuse=False), encoder=tiny_encoder)
    assert stored_queries(config.out) == stored_queries(scratch)
    got, want = encodings(config.out), encodings(scratch)
    for doc_id, (vector, _) in want.items():
        np.testing.assert_allclose(got[doc_id][0], vector, atol=1e-6)


def test_queries_of_another_generator_or_a_client_are_not_kept(
    tmp_path: Path, tiny_encoder: Any, tiny_model_dir: Path
) -> None:
    from index.live import LiveIndex
    from index.records import Document
    from models.doc2query import ExpansionConfig

    generator = tiny_generator(tmp_path / "gmlm", tiny_model_dir)
    config = IndexBuildConfig(
        corpus=write_corpus(tmp_path / "c.jsonl", FIRST),
        out=tmp_path / "index",
        show_progress=False,
        expansion=ExpansionConfig(str(generator), 2, 2),
    )
    build_index(config, encoder=tiny_encoder)
    assert build_index(config, encoder=tiny_encoder).expansions_reused == len(FIRST)
    # another encoder: the queries are kept, the vectors are not
    from models.encoder import EncoderConfig, TextEncoder

    shorter = TextEncoder(EncoderConfig(model=tiny_encoder.model_name, device="cpu", max_length=16))
    stats = build_index(config, encoder=shorter)
    assert (stats.expansions_reused, stats.reused) == (len(FIRST), 0)
    # a document re-sent over HTTP with its client's queries: not the generator's
    live = LiveIndex.open(config.out)
    sent = Document("d1", FIRST["d1"], metadata={"doc2query": ["a client's own query"]})
    live.add([sent], tiny_encoder.encode([sent.first_stage_text]))
    live.snapshot()
    live.close()
    assert build_index(config, encoder=tiny_encoder).expansions_reused == len(FIRST) - 1
    assert "a client's own query" not in stored_queries(config.out)["d1"]
    # decoded otherwise, or a generator retrained into the same folder
    other_decoding = replace(config, expansion=ExpansionConfig(str(generator), 2, 3))
    assert build_index(other_decoding, encoder=tiny_encoder).expansions_reused == 0
    assert build_index(config, encoder=tiny_encoder).expansions_reused == 0
    tiny_generator(generator, tiny_model_dir, seed=1)
    assert build_index(config, encoder=tiny_encoder).expansions_reused == 0
