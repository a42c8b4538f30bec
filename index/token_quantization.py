"""Per-token scalar quantisation of token matrices for the token store.

Each token vector (a row) gets its own scale, ``max |x| / levels``, stored as float16; its
values become signed integer codes in ``[-levels, levels]``. ``int8`` keeps 127 levels a side
(one byte per value), ``int4`` keeps 7 (two values per byte, packed low nibble first). The
re-ranker's token vectors are L2-normalised, so every row has the same range and one scale
per row loses little: see reports/lite.md for the ranking quality of each form.

Bytes per token for ``dim`` values: float16 ``2 dim``; int8 ``dim + 2``; int4 ``dim / 2 + 2``.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np


class TokenDtype(StrEnum):
    """How the token store keeps each value."""

    float16 = "float16"
    int8 = "int8"
    int4 = "int4"

    def bytes_per_token(self, dim: int) -> int:
        """Bytes one token vector takes, scale included.

        >>> [TokenDtype(d).bytes_per_token(128) for d in ("float16", "int8", "int4")]
        [256, 130, 66]
        """
        if self is TokenDtype.float16:
            return 2 * dim
        if self is TokenDtype.int8:
            return dim + 2
        return packed_int4_width(dim) + 2


INT8_LEVELS = 127
INT4_LEVELS = 7


def packed_int4_width(dim: int) -> int:
    """Bytes that hold ``dim`` 4-bit codes.

    >>> packed_int4_width(128), packed_int4_width(5)
    (64, 3)
    """
    return (dim + 1) // 2


def row_scales(matrix: np.ndarray, levels: int) -> np.ndarray:
    """Per-row scale ``max |x| / levels`` as float16, ``(tokens,)``; all-zero rows get 1."""
    peak = np.abs(matrix.astype(np.float32)).max(axis=1) if matrix.size else np.zeros(len(matrix))
    scales = (peak / levels).astype(np.float16)
    scales[scales == 0] = 1.0  # zero rows, and scales below float16's range
    return scales


def quantize_rows(matrix: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes ``(tokens, dim)`` int8 in ``[-levels, levels]`` and scales ``(tokens,)`` float16.

    >>> codes, scales = quantize_rows(np.array([[0.5, -1.0, 0.25]]), 127)
    >>> codes.tolist(), float(scales[0]) == float(np.float16(1 / 127))
    ([[64, -127, 32]], True)
    """
    scales = row_scales(matrix, levels)
    codes = np.rint(matrix.astype(np.float32) / scales.astype(np.float32)[:, None])
    return np.clip(codes, -levels, levels).astype(np.int8), scales


def dequantize_rows(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """``(tokens, dim)`` float32 values from integer codes and per-row scales.

    float32, not float16: numpy's cast to float16 costs five times the multiply, and the
    scorer works in float32 anyway.

    >>> x = np.array([[0.6, -0.8], [0.0, 0.0]], dtype=np.float32)
    >>> np.abs(dequantize_rows(*quantize_rows(x, 127)) - x).max() < 0.005
    np.True_
    """
    return np.multiply(codes, scales.astype(np.float32)[:, None], dtype=np.float32)


def pack_int4(codes: np.ndarray) -> np.ndarray:
    """Pack codes in ``[-8, 7]`` two per byte: ``(tokens, dim)`` -> ``(tokens, ceil(dim/2))``.

    >>> pack_int4(np.array([[1, -2, 7]], dtype=np.int8)).tolist()
    [[225, 7]]
    """
    tokens, dim = codes.shape
    nibbles = np.zeros((tokens, 2 * packed_int4_width(dim)), dtype=np.uint8)
    nibbles[:, :dim] = codes.astype(np.int16) & 0x0F
    return (nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray, dim: int) -> np.ndarray:
    """Inverse of ``pack_int4``: ``(tokens, ceil(dim/2))`` uint8 -> ``(tokens, dim)`` int8.

    Arithmetic shifts of the bytes read as int8 sign-extend each nibble.

    >>> codes = np.array([[1, -2, 7], [-7, 0, 3]], dtype=np.int8)
    >>> bool((unpack_int4(pack_int4(codes), 3) == codes).all())
    True
    """
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    low = (packed << 4).view(np.int8) >> 4
    high = packed.view(np.int8) >> 4
    return np.stack((low, high), axis=-1).reshape(packed.shape[0], -1)[:, :dim]


def payload_layout(dtype: TokenDtype, dim: int) -> tuple[type[np.generic], int]:
    """numpy type and row width of the stored payload.

    >>> [payload_layout(TokenDtype(d), 5)[1] for d in ("float16", "int8", "int4")]
    [5, 5, 3]
    """
    if dtype is TokenDtype.float16:
        return np.float16, dim
    if dtype is TokenDtype.int8:
        return np.int8, dim
    return np.uint8, packed_int4_width(dim)


def encode_tokens(matrix: np.ndarray, dtype: TokenDtype) -> tuple[np.ndarray, np.ndarray | None]:
    """Stored payload ``(tokens, width)`` and scales ``(tokens,)`` (None for float16)."""
    if dtype is TokenDtype.float16:
        return np.ascontiguousarray(matrix, dtype=np.float16), None
    if dtype is TokenDtype.int8:
        return quantize_rows(matrix, INT8_LEVELS)
    codes, scales = quantize_rows(matrix, INT4_LEVELS)
    return pack_int4(codes), scales


def decode_tokens(
    payload: np.ndarray, scales: np.ndarray | None, dtype: TokenDtype, dim: int
) -> np.ndarray:
    """``(tokens, dim)`` matrix back from ``encode_tokens``' output: float16 as stored, or
    float32 for the quantised forms.

    >>> x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float16)
    >>> tolerances = {"float16": 1e-6, "int8": 0.02, "int4": 0.3}
    >>> [float(np.abs(decode_tokens(*encode_tokens(x, TokenDtype(d)), TokenDtype(d), 6) - x).max())
    ...  < tol for d, tol in tolerances.items()]
    [True, True, True]
    """
    if dtype is TokenDtype.float16:
        return np.asarray(payload, dtype=np.float16)
    if scales is None:
        raise ValueError(f"{dtype.value} token matrices need their scales")
    codes = np.asarray(payload) if dtype is TokenDtype.int8 else unpack_int4(payload, dim)
    return dequantize_rows(codes, scales)
