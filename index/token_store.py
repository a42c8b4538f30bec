"""Token store: each document's projected token matrix, float16, in one memory-mapped file.

A store is a folder ``tokens-<gen>/`` holding ``tokens.f16`` (all rows, ``(total, dim)``),
``index.npz`` (sorted docstore keys with each matrix's offset and length) and ``meta.json``
(dimension and the re-ranker that wrote it, with a fingerprint of its weights). Reading a
candidate's matrix is a slice of the memory map: re-ranking never re-runs the transformer
over an indexed document.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DATA_NAME = "tokens.f16"
INDEX_NAME = "index.npz"
META_NAME = "meta.json"


class TokenStoreWriter:
    """Appends ``(key, (tokens, dim))`` matrices; ``close`` writes the index and metadata."""

    def __init__(self, folder: Path, dim: int, meta: dict[str, Any] | None = None):
        self.folder = folder
        self.dim = dim
        self.meta = dict(meta or {})
        folder.mkdir(parents=True, exist_ok=False)
        self._data = (folder / DATA_NAME).open("wb")
        self._keys: list[int] = []
        self._lengths: list[int] = []

    def add(self, key: int, matrix: np.ndarray) -> None:
        if matrix.ndim != 2 or matrix.shape[1] != self.dim:
            raise ValueError(f"expected a (tokens, {self.dim}) matrix, got {matrix.shape}")
        self._data.write(np.ascontiguousarray(matrix, dtype=np.float16).tobytes())
        self._keys.append(int(key))
        self._lengths.append(int(matrix.shape[0]))

    def close(self) -> Path:
        self._data.flush()
        self._data.close()
        keys = np.asarray(self._keys, dtype=np.int64)
        lengths = np.asarray(self._lengths, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        if len(keys) and np.any(np.diff(keys[order]) == 0):
            raise ValueError("a key was added twice to the token store")
        np.savez(
            self.folder / INDEX_NAME,
            keys=keys[order],
            offsets=offsets[order],
            lengths=lengths[order],
        )
        meta = {**self.meta, "dim": self.dim, "count": len(keys), "tokens": int(lengths.sum())}
        (self.folder / META_NAME).write_text(json.dumps(meta, indent=2))
        return self.folder


class TokenStore:
    """Read-only access to a token store folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.meta: dict[str, Any] = json.loads((folder / META_NAME).read_text())
        self.dim = int(self.meta["dim"])
        index = np.load(folder / INDEX_NAME)
        self._keys = index["keys"]
        self._offsets = index["offsets"]
        self._lengths = index["lengths"]
        total = int(self._lengths.sum()) if len(self._lengths) else 0
        size = (folder / DATA_NAME).stat().st_size
        if size != total * self.dim * 2:
            raise ValueError(
                f"{folder / DATA_NAME} holds {size} bytes; expected {total * self.dim * 2}"
            )
        self._data = (
            np.memmap(folder / DATA_NAME, dtype=np.float16, mode="r", shape=(total, self.dim))
            if total
            else np.zeros((0, self.dim), np.float16)
        )

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: int) -> bool:
        i = int(np.searchsorted(self._keys, key))
        return i < len(self._keys) and int(self._keys[i]) == key

    def get(self, keys: Iterable[int]) -> list[np.ndarray | None]:
        """Each key's ``(tokens, dim)`` float16 matrix, or None for keys not stored."""
        wanted = np.asarray(list(keys), dtype=np.int64)
        pos = np.searchsorted(self._keys, wanted)
        out: list[np.ndarray | None] = []
        for key, i in zip(wanted, pos, strict=True):
            if i < len(self._keys) and self._keys[i] == key:
                start = int(self._offsets[i])
                out.append(np.asarray(self._data[start : start + int(self._lengths[i])]))
            else:
                out.append(None)
        return out

    def bytes_per_document(self) -> float:
        return (
            self._data.nbytes
            + sum((self.folder / n).stat().st_size for n in (INDEX_NAME, META_NAME))
        ) / max(1, len(self))


def write_token_store(
    folder: Path,
    keys: Sequence[int],
    matrices: Sequence[np.ndarray],
    dim: int,
    meta: dict[str, Any] | None = None,
) -> TokenStore:
    writer = TokenStoreWriter(folder, dim, meta)
    for key, matrix in zip(keys, matrices, strict=True):
        writer.add(key, matrix)
    writer.close()
    return TokenStore(folder)
