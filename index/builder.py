"""``loupe index build``: encode a corpus and write docstore, FAISS index and manifest."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from index.bm25_index import BM25Index
from index.docstore import DocStore
from index.faiss_index import FaissIndex
from index.manifest import MANIFEST_NAME, Manifest, new_generation, sha256_file
from index.readers.corpus import CorpusFormat, read_corpus
from index.token_store import TokenStoreWriter
from models.backbone import DEFAULT_MODEL
from models.encoder import EncoderConfig, TextEncoder
from models.index_encoding import encode_for_index
from models.late_interaction import LateInteractionModel

log = logging.getLogger(__name__)

GENERATION_PREFIXES = ("vectors-", "docstore-", "tokens-", "bm25-")


@dataclass(frozen=True)
class IndexBuildConfig:
    corpus: Path
    out: Path
    model: str = DEFAULT_MODEL
    factory: str = "Flat"
    corpus_format: CorpusFormat = CorpusFormat.auto
    batch_size: int = 32
    max_length: int | None = None
    chunk_size: int = 8192
    device: str | None = None
    show_progress: bool = True
    token_store: bool = False
    """Also store each document's projected token matrix for the re-ranker."""
    reranker: str = DEFAULT_MODEL
    """The late-interaction model whose token matrices the store holds."""
    bm25: bool = False
    """Also build a BM25 index (a second first stage)."""


@dataclass(frozen=True)
class BuildStats:
    manifest: Manifest
    seconds: float

    @property
    def passages_per_second(self) -> float:
        return self.manifest.count / self.seconds if self.seconds > 0 else float("nan")


def build_index(config: IndexBuildConfig, encoder: TextEncoder | None = None) -> BuildStats:
    """Build an index folder; the previous index in ``config.out`` stays valid until the end."""
    started = time.perf_counter()
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    encoder = encoder or TextEncoder(
        EncoderConfig(
            model=config.model,
            batch_size=config.batch_size,
            max_length=config.max_length,
            device=config.device,
        )
    )
    generation = new_generation()
    docstore_name = f"docstore-{generation}.sqlite"
    vectors_name = f"vectors-{generation}.faiss"
    all_keys: list[np.ndarray] = []
    all_vectors: list[np.ndarray] = []
    all_texts: list[str] = []
    tokens_name = f"tokens-{generation}"
    token_encoder = _token_encoder(config, encoder) if config.token_store else None
    token_writer = (
        TokenStoreWriter(out / tokens_name, token_encoder.dim, token_encoder_meta(token_encoder))
        if token_encoder is not None
        else None
    )
    documents = read_corpus(config.corpus, config.corpus_format)
    with (
        DocStore(out / docstore_name) as store,
        tqdm(desc="indexing", unit="doc", disable=not config.show_progress) as bar,
    ):
        while chunk := list(islice(documents, config.chunk_size)):
            texts = [d.full_text for d in chunk]
            if token_encoder is not None and token_writer is not None:
                vectors, matrices = encode_for_index(encoder, token_encoder, texts)
                keys, _ = store.upsert(chunk, vectors)
                for key, matrix in zip(keys, matrices, strict=True):
                    token_writer.add(key, matrix)
            else:
                vectors = encoder.encode(texts)
                keys, _ = store.upsert(chunk, vectors)
            all_keys.append(np.asarray(keys, dtype=np.int64))
            all_vectors.append(vectors)
            if config.bm25:
                all_texts += [d.full_text for d in chunk]
            bar.update(len(chunk))
        if not all_keys:
            raise ValueError(f"corpus {config.corpus} holds no documents")
        if token_writer is not None:
            token_writer.close()
        store.set_meta("model", encoder.model_name)
        store.checkpoint()
        max_key = store.max_key()
    keys = np.concatenate(all_keys)
    vectors = np.concatenate(all_vectors)
    index = FaissIndex.create(encoder.dim, config.factory, use_gpu=False)
    index.train(vectors)
    index.add(keys, vectors)
    bm25_name = None
    if config.bm25:
        bm25_name = f"bm25-{generation}"
        BM25Index.build(keys.tolist(), all_texts).save(out / bm25_name)
    tmp_vectors = out / f".{vectors_name}.tmp"
    index.save(tmp_vectors)
    os.replace(tmp_vectors, out / vectors_name)
    manifest = Manifest(
        model=encoder.model_name,
        dimension=encoder.dim,
        count=len(index),
        factory=config.factory,
        vectors_file=vectors_name,
        vectors_sha256=sha256_file(out / vectors_name),
        docstore_file=docstore_name,
        max_key=max_key,
        generation=generation,
        token_store_file=tokens_name if token_writer is not None else None,
        token_store=dict(token_writer.meta) if token_writer is not None else {},
        bm25_dir=bm25_name,
    )
    manifest.save(out)
    remove_stale_generations(out, manifest)
    return BuildStats(manifest=manifest, seconds=time.perf_counter() - started)


def _token_encoder(config: IndexBuildConfig, encoder: TextEncoder) -> LateInteractionModel:
    """The re-ranker whose token matrices go into the store (on the index encoder itself
    when both use the same frozen backbone)."""
    from models.registry import resolve_late_interaction

    folder = resolve_late_interaction(config.reranker)
    model = LateInteractionModel.load(folder, device=config.device, share_encoder=encoder)
    return model.eval()


def token_encoder_meta(model: LateInteractionModel) -> dict[str, object]:
    return {
        "reranker_fingerprint": model.fingerprint,
        "reranker_backbone": model.config.backbone,
        "dim": model.dim,
        "d_len": model.config.d_len,
    }


def remove_stale_generations(folder: Path, manifest: Manifest) -> None:
    """Delete files of earlier or interrupted builds that the manifest does not name."""
    keep = {manifest.vectors_file, manifest.docstore_file, MANIFEST_NAME}
    keep |= {f"{manifest.docstore_file}-wal", f"{manifest.docstore_file}-shm"}
    if manifest.token_store_file:
        keep.add(manifest.token_store_file)
    if manifest.bm25_dir:
        keep.add(manifest.bm25_dir)
    for path in folder.iterdir():
        name = path.name.lstrip(".")
        if path.name in keep or not name.startswith(GENERATION_PREFIXES):
            continue
        if path.is_dir():
            for child in path.iterdir():
                child.unlink()
            path.rmdir()
        else:
            path.unlink()
