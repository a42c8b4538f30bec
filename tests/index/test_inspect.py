"""``loupe index info``: what an index folder holds, from its files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from qdrant_client import QdrantClient
from typer.testing import CliRunner

from index.builder import IndexBuildConfig, build_index
from index.inspect import index_info
from index.live import LiveIndex
from index.manifest import Manifest
from index.qdrant_index import QdrantIndex, QdrantTarget, collection_name
from index.records import Document
from loupe.cli import app
from models.late_interaction import LateInteractionConfig, LateInteractionModel
from models.lite import ScorerConfig


def test_info_describes_a_built_index_and_checks_its_vectors(
    tmp_path: Path, tiny_corpus: Path, tiny_encoder
) -> None:
    lite = LateInteractionModel(
        LateInteractionConfig(dim=8, q_len=8, d_len=16, scorer=ScorerConfig(q_len=8, d_len=16)),
        tiny_encoder,
    )
    reranker = lite.save(tmp_path / "lite")
    out = tmp_path / "index"
    config = IndexBuildConfig(
        corpus=tiny_corpus,
        out=out,
        token_store=True,
        reranker=str(reranker),
        bm25=True,
        show_progress=False,
    )
    manifest = build_index(config, tiny_encoder).manifest
    info = index_info(out, verify=True)
    assert (info.generation, info.documents, info.snapshot_documents) == (
        manifest.generation,
        4,
        4,
    )
    assert info.vectors == "faiss Flat" and info.checksum_ok is True and info.bm25
    assert info.finds_texts and "texts findable: yes" in info.lines()
    assert info.vectors_bytes == (out / manifest.vectors_file).stat().st_size
    assert info.token_store is not None
    assert info.token_store["documents"] == 4 and info.token_store["dim"] == 8
    assert info.token_store["reranker_fingerprint"] == manifest.token_store["reranker_fingerprint"]
    assert any(line.startswith("token store: re-ranker") for line in info.lines())

    result = CliRunner().invoke(app, ["index", "info", "--index", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["generation"] == manifest.generation

    with (out / manifest.vectors_file).open("ab") as handle:
        handle.write(b"garbage")
    result = CliRunner().invoke(app, ["index", "info", "--index", str(out), "--verify"])
    assert result.exit_code == 1 and "checksum: MISMATCH" in result.output


def test_info_counts_documents_added_since_the_snapshot_and_names_qdrant(tmp_path: Path) -> None:
    target = QdrantTarget(str(tmp_path / "qdrant"))
    folder = tmp_path / "index"
    live = LiveIndex.open_or_create(folder, model="m", dimension=4, qdrant=target)
    live.add([Document(id=f"d{i}", text="t") for i in range(3)], np.eye(4)[:3])
    live.close()  # no snapshot since the documents came
    info = index_info(folder)
    collection = Manifest.load(folder).qdrant_collection
    assert (info.documents, info.snapshot_documents) == (3, 0)
    assert info.vectors == f"qdrant {collection} at {target.location}"
    assert info.vectors_bytes is None and info.token_store is None and info.qdrant_points is None
    assert index_info(folder, verify=True).qdrant_points == 3


def test_remove_deletes_the_folder_and_its_qdrant_collection(tmp_path: Path) -> None:
    folder = tmp_path / "index"
    target = QdrantTarget(str(tmp_path / "qdrant"))
    LiveIndex.open_or_create(folder, model="m", dimension=4, qdrant=target).close()
    collection = Manifest.load(folder).qdrant_collection
    # an interrupted build's docstore and partial collection
    (folder / "docstore-20261128T000000-abcdef.sqlite").touch()
    QdrantIndex.create(target, collection_name("20261128T000000-abcdef"), 4).close()
    runner = CliRunner()
    refused = runner.invoke(app, ["index", "remove", "--index", str(folder)], input="n\n")
    assert refused.exit_code == 1 and folder.is_dir()  # asked, and told no
    not_an_index = runner.invoke(app, ["index", "remove", "--index", str(tmp_path), "--yes"])
    assert not_an_index.exit_code == 2 and "not a Loupe index" in not_an_index.output
    result = runner.invoke(app, ["index", "remove", "--index", str(folder), "--yes"])
    assert result.exit_code == 0, result.output
    assert f"Qdrant collection {collection}" in result.output
    assert "interrupted builds: loupe-20261128T000000-abcdef" in result.output
    assert not folder.exists()
    client = QdrantClient(path=target.location)
    try:
        assert not client.collection_exists(str(collection))
        assert client.get_collections().collections == []
    finally:
        client.close()
