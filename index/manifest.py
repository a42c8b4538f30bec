"""The index manifest: what an index folder holds, written last and atomically.

An index folder holds generation-stamped files (``vectors-<gen>.faiss``,
``docstore-<gen>.sqlite``) and ``manifest.json`` naming the current ones (or, with the Qdrant
backend, the collection ``loupe-<gen>`` in place of the vectors file). A build writes new
files first and replaces the manifest last (``os.replace``), so a crash at any point leaves
the previous manifest, and so the last good index, readable.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from index.errors import IndexCorruptError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


@dataclass
class Manifest:
    model: str
    dimension: int
    count: int
    factory: str
    vectors_file: str
    vectors_sha256: str
    docstore_file: str
    max_key: int
    generation: str
    token_store_file: str | None = None
    token_store: dict[str, object] = field(default_factory=dict)
    bm25_dir: str | None = None
    vectors_backend: str = "faiss"
    """Where the first stage's vectors live: ``faiss`` (``vectors_file`` in the folder) or
    ``qdrant`` (``qdrant_collection`` at ``qdrant_location``; no file, no checksum)."""
    qdrant_location: str | None = None
    qdrant_collection: str | None = None
    format_version: int = FORMAT_VERSION
    created_at: float = field(default_factory=time.time)

    def token_store_mismatch(self, fingerprint: str | None) -> str | None:
        """Why the token store cannot serve a re-ranker with ``fingerprint``, or None when it
        can (or the index has no store): another model wrote it, so every candidate would
        be re-encoded.

        >>> m = Manifest("m", 2, 0, "Flat", "v", "sha", "d", 0, "g", token_store_file="t",
        ...              token_store={"reranker_fingerprint": "a"})
        >>> m.token_store_mismatch("a") is None, m.token_store_mismatch("b")[:40]
        (True, 'the token store was written by re-ranker')
        """
        if self.token_store_file is None:
            return None
        written_by = self.token_store.get("reranker_fingerprint")
        if written_by == fingerprint:
            return None
        return (
            f"the token store was written by re-ranker {written_by}, not by this one "
            f"({fingerprint}): its candidates are re-encoded on every search; rebuild the "
            "index with loupe index build --token-store"
        )

    def save(self, folder: Path) -> None:
        write_atomic(folder / MANIFEST_NAME, json.dumps(asdict(self), indent=2).encode())

    @classmethod
    def load(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a Loupe index (no {MANIFEST_NAME})")
        try:
            data = json.loads(path.read_text())
            manifest = cls(**data)
        except (json.JSONDecodeError, TypeError) as exc:
            raise IndexCorruptError(f"unreadable manifest {path}: {exc}") from exc
        if manifest.format_version != FORMAT_VERSION:
            raise IndexCorruptError(
                f"{path} has format {manifest.format_version}; this Loupe reads {FORMAT_VERSION}"
            )
        return manifest


def new_generation() -> str:
    """A sortable, unique stamp for a build's files."""
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{os.urandom(3).hex()}"


def interrupted_generations(folder: Path, kept_docstores: set[str]) -> list[str]:
    """The generations of the builds whose docstores lie in ``folder`` besides the files
    ``kept_docstores`` names: builds interrupted before their manifest was written, whose
    files the next snapshot deletes (index/builder.py's ``remove_stale_generations``). (A
    manifest's own generation is no guide: ``loupe index reindex`` gives the docstore it
    keeps a new one.)"""
    return sorted(
        path.name.removeprefix("docstore-").removesuffix(".sqlite")
        for path in folder.glob("docstore-*.sqlite")
        if path.name not in kept_docstores
    )


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name, flush to disk, rename over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
