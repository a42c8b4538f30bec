"""Token store: each document's projected token matrix in one memory-mapped file.

A store is a folder ``tokens-<gen>/`` holding the rows of every matrix (``tokens.f16``:
float16 ``(total, dim)``; or ``tokens.i8`` / ``tokens.i4``: per-token int8 or packed int4
codes, with ``scales.f16``, one float16 scale per token; see ``index.token_quantization``),
``index.npz`` (sorted docstore keys with each matrix's offset and length) and ``meta.json``
(dimension, value type and the re-ranker that wrote it, with a fingerprint of its weights).
Reading a candidate's matrix is a slice of the memory map: re-ranking never re-runs the
transformer over an indexed document.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from index.token_quantization import TokenDtype, decode_tokens, encode_tokens, payload_layout

DATA_NAMES = {
    TokenDtype.float16: "tokens.f16",
    TokenDtype.int8: "tokens.i8",
    TokenDtype.int4: "tokens.i4",
}
SCALES_NAME = "scales.f16"
INDEX_NAME = "index.npz"
META_NAME = "meta.json"


PROGRESS_NAME = "progress.npz"
"""What a writer had written at its last :meth:`TokenStoreWriter.checkpoint` (an unfinished
store only: ``close`` removes it)."""


class TokenStoreWriter:
    """Appends ``(key, (tokens, dim))`` matrices; ``close`` writes the index and metadata.

    ``checkpoint`` records what is written so far, and ``resume`` reopens an unfinished store
    at a checkpoint, so that an interrupted index build goes on where it stopped."""

    def __init__(
        self,
        folder: Path,
        dim: int,
        meta: dict[str, Any] | None = None,
        dtype: TokenDtype = TokenDtype.float16,
        *,
        _resuming: bool = False,
    ):
        self.folder = folder
        self.dim = dim
        self.dtype = TokenDtype(dtype)
        self.meta = {**(meta or {}), "dtype": self.dtype.value}
        folder.mkdir(parents=True, exist_ok=_resuming)
        mode = "r+b" if _resuming else "wb"
        self._data = (folder / DATA_NAMES[self.dtype]).open(mode)
        self._scales = (
            (folder / SCALES_NAME).open(mode) if self.dtype is not TokenDtype.float16 else None
        )
        self._keys: list[int] = []
        self._lengths: list[int] = []
        self._data_ends: list[int] = []
        self._scale_ends: list[int] = []

    @classmethod
    def resume(
        cls,
        folder: Path,
        dim: int,
        meta: dict[str, Any] | None = None,
        dtype: TokenDtype = TokenDtype.float16,
        *,
        keep_through_key: int,
    ) -> TokenStoreWriter:
        """Reopen an unfinished store at its last checkpoint, keeping the matrices of keys
        up to ``keep_through_key`` (keys were added in ascending order) and cutting the files
        after them."""
        progress = np.load(folder / PROGRESS_NAME)
        keys = progress["keys"]
        kept = int(np.searchsorted(keys, keep_through_key, side="right"))
        writer = cls(folder, dim, meta, dtype, _resuming=True)
        writer._keys = [int(k) for k in keys[:kept]]
        writer._lengths = [int(n) for n in progress["lengths"][:kept]]
        writer._data_ends = [int(n) for n in progress["data_ends"][:kept]]
        writer._scale_ends = [int(n) for n in progress["scale_ends"][:kept]]
        files = ((writer._data, writer._data_ends), (writer._scales, writer._scale_ends))
        for handle, ends in files:
            if handle is not None:
                handle.truncate(ends[-1] if ends else 0)
                handle.seek(0, 2)
        return writer

    def checkpoint(self) -> None:
        """Flush the files and record what they hold (atomically)."""
        for handle in (self._data, self._scales):
            if handle is not None:
                handle.flush()
                os.fsync(handle.fileno())
        tmp = self.folder / f"{PROGRESS_NAME}.tmp.npz"
        np.savez(
            tmp,
            keys=np.asarray(self._keys, dtype=np.int64),
            lengths=np.asarray(self._lengths, dtype=np.int64),
            data_ends=np.asarray(self._data_ends, dtype=np.int64),
            scale_ends=np.asarray(self._scale_ends, dtype=np.int64),
        )
        os.replace(tmp, self.folder / PROGRESS_NAME)

    def add(self, key: int, matrix: np.ndarray) -> None:
        if matrix.ndim != 2 or matrix.shape[1] != self.dim:
            raise ValueError(f"expected a (tokens, {self.dim}) matrix, got {matrix.shape}")
        payload, scales = encode_tokens(matrix, self.dtype)
        self._data.write(payload.tobytes())
        if self._scales is not None and scales is not None:
            self._scales.write(scales.tobytes())
        self._keys.append(int(key))
        self._lengths.append(int(matrix.shape[0]))
        self._data_ends.append(self._data.tell())
        self._scale_ends.append(self._scales.tell() if self._scales is not None else 0)

    def close(self) -> Path:
        for handle in (self._data, self._scales):
            if handle is not None:
                handle.flush()
                handle.close()
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
        meta = {
            **self.meta,
            "dim": self.dim,
            "count": len(keys),
            "tokens": int(lengths.sum()),
        }
        (self.folder / META_NAME).write_text(json.dumps(meta, indent=2))
        (self.folder / PROGRESS_NAME).unlink(missing_ok=True)
        return self.folder


class TokenStore:
    """Read-only access to a token store folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.meta: dict[str, Any] = json.loads((folder / META_NAME).read_text())
        self.dim = int(self.meta["dim"])
        self.dtype = TokenDtype(self.meta.get("dtype", TokenDtype.float16.value))
        index = np.load(folder / INDEX_NAME)
        self._keys = index["keys"]
        self._offsets = index["offsets"]
        self._lengths = index["lengths"]
        total = int(self._lengths.sum()) if len(self._lengths) else 0
        kind, width = payload_layout(self.dtype, self.dim)
        self._data = _map_rows(folder / DATA_NAMES[self.dtype], kind, (total, width))
        self._scales = (
            _map_rows(folder / SCALES_NAME, np.float16, (total,))
            if self.dtype is not TokenDtype.float16
            else None
        )

    def __len__(self) -> int:
        return len(self._keys)

    def keys(self) -> list[int]:
        """Every stored docstore key, ascending."""
        return [int(k) for k in self._keys]

    def __contains__(self, key: int) -> bool:
        i = int(np.searchsorted(self._keys, key))
        return i < len(self._keys) and int(self._keys[i]) == key

    def get(self, keys: Iterable[int]) -> list[np.ndarray | None]:
        """Each key's ``(tokens, dim)`` matrix, or None for keys not stored: float16 from a
        float16 store, float32 decoded from a quantised one.

        The rows of all found keys are gathered and decoded in one call.
        """
        wanted = np.asarray(list(keys), dtype=np.int64)
        pos = np.searchsorted(self._keys, wanted)
        found = [
            int(i) if i < len(self._keys) and self._keys[i] == key else -1
            for key, i in zip(wanted, pos, strict=True)
        ]
        rows = [
            slice(int(self._offsets[i]), int(self._offsets[i] + self._lengths[i]))
            for i in found
            if i >= 0
        ]
        if not rows:
            return [None] * len(found)
        payload = np.concatenate([self._data[r] for r in rows])
        scales = (
            np.concatenate([self._scales[r] for r in rows]) if self._scales is not None else None
        )
        decoded = decode_tokens(payload, scales, self.dtype, self.dim)
        bounds = np.cumsum([r.stop - r.start for r in rows])[:-1]
        matrices = iter(np.split(decoded, bounds))
        return [next(matrices) if i >= 0 else None for i in found]

    def bytes_per_document(self) -> float:
        files = [DATA_NAMES[self.dtype], INDEX_NAME, META_NAME]
        if self._scales is not None:
            files.append(SCALES_NAME)
        return sum((self.folder / n).stat().st_size for n in files) / max(1, len(self))


def _map_rows(path: Path, kind: type[np.generic], shape: tuple[int, ...]) -> np.ndarray:
    """Read-only memory map of ``shape`` values of ``kind``; the file size must match."""
    expected = int(np.prod(shape)) * np.dtype(kind).itemsize
    size = path.stat().st_size
    if size != expected:
        raise ValueError(f"{path} holds {size} bytes; expected {expected}")
    if expected == 0:
        return np.zeros(shape, kind)
    return np.memmap(path, dtype=kind, mode="r", shape=shape)


def write_token_store(
    folder: Path,
    keys: Sequence[int],
    matrices: Sequence[np.ndarray],
    dim: int,
    meta: dict[str, Any] | None = None,
    dtype: TokenDtype = TokenDtype.float16,
) -> TokenStore:
    writer = TokenStoreWriter(folder, dim, meta, dtype)
    for key, matrix in zip(keys, matrices, strict=True):
        writer.add(key, matrix)
    writer.close()
    return TokenStore(folder)
