"""Vectors in the forms embedding APIs answer: base64 float32 (OpenAI's
``encoding_format="base64"``, Cohere's ``base64``), and Cohere's compressed types: ``int8``
and ``uint8`` (one byte a dimension) and ``binary`` and ``ubinary`` (one bit a dimension,
packed eight to a byte).

Cohere's own models are trained for its byte forms; Loupe's encoders are not, so the bytes
are one fixed quantisation of unit-length vectors, the same for every vector (a dot product
of two int8 vectors ranks as the float one does, up to rounding): a dimension is scaled so
that ``INT8_RANGE_SIGMAS`` standard deviations of a unit vector's component (``1/√dim``)
reach 127, then rounded and clipped to ±127. reports/service.md measures what each form keeps."""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any

import numpy as np

INT8_RANGE_SIGMAS = 3.0
"""How many standard deviations of a unit vector's component (``1/√dim``) int8 spans:
chosen on SciFact's train queries among 2 to 8 (bench/embedding_types.py), where it is level
with float search."""


def encode_base64(vector: np.ndarray) -> str:
    """Little-endian float32 bytes, base64.

    >>> encode_base64(np.array([1.0], dtype=np.float32))
    'AACAPw=='
    """
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def int8_scale(dim: int, sigmas: float = INT8_RANGE_SIGMAS) -> float:
    """The factor that maps a ``dim``-d unit vector's components to int8.

    >>> round(int8_scale(384), 2)
    829.56
    """
    return 127.0 / (sigmas / math.sqrt(dim))


def to_int8(vectors: np.ndarray, sigmas: float = INT8_RANGE_SIGMAS) -> np.ndarray:
    """``(n, dim)`` unit vectors as ``(n, dim)`` int8, one scale for all, clipped to
    ``±127`` (symmetric: a negative component clips where a positive one does).

    >>> to_int8(np.array([[0.6, -0.8, 0.0, 0.0]]), sigmas=2.0).tolist()
    [[76, -102, 0, 0]]
    >>> to_int8(np.array([[1.0, -1.0, 0.0, 0.0]]), sigmas=1.0).tolist()  # clipped
    [[127, -127, 0, 0]]
    """
    scaled = np.rint(np.asarray(vectors, dtype=np.float64) * int8_scale(vectors.shape[-1], sigmas))
    return np.clip(scaled, -127, 127).astype(np.int8)


def to_uint8(vectors: np.ndarray, sigmas: float = INT8_RANGE_SIGMAS) -> np.ndarray:
    """:func:`to_int8` shifted by 128 into ``1..255``.

    >>> to_uint8(np.array([[0.6, -0.8, 0.0, 0.0]]), sigmas=2.0).tolist()
    [[204, 26, 128, 128]]
    """
    return (to_int8(vectors, sigmas).astype(np.int16) + 128).astype(np.uint8)


def to_ubinary(vectors: np.ndarray) -> np.ndarray:
    """``(n, dim)`` vectors as ``(n, ceil(dim / 8))`` uint8: one bit a dimension, 1 where
    it is positive, the first dimension in the highest bit (a short last byte is padded
    with 0 bits).

    >>> to_ubinary(np.array([[0.1, -0.2, 0.3, 0.0, 0.5, 0.5, -1.0, 0.2, 0.9]])).tolist()
    [[173, 128]]
    """
    return np.packbits(np.asarray(vectors) > 0, axis=-1)


def to_binary(vectors: np.ndarray) -> np.ndarray:
    """:func:`to_ubinary`'s bytes minus 128, as int8 (Cohere's signed ``binary``).

    >>> to_binary(np.array([[0.1, -0.2, 0.3, 0.0, 0.5, 0.5, -1.0, 0.2, 0.9]])).tolist()
    [[45, 0]]
    """
    return (to_ubinary(vectors).astype(np.int16) - 128).astype(np.int8)


_FORMS: dict[str, Callable[[np.ndarray], list[Any]]] = {
    "float": lambda vectors: vectors.tolist(),
    "base64": lambda vectors: [encode_base64(v) for v in vectors],
    "int8": lambda vectors: to_int8(vectors).tolist(),
    "uint8": lambda vectors: to_uint8(vectors).tolist(),
    "binary": lambda vectors: to_binary(vectors).tolist(),
    "ubinary": lambda vectors: to_ubinary(vectors).tolist(),
}


FORMS = tuple(_FORMS)
"""The forms :func:`encode_as` writes (the request schemas' ``embedding_types`` list them)."""


def encode_as(vectors: np.ndarray, form: str) -> list[Any]:
    """``(n, dim)`` unit vectors in one of :data:`FORMS`, one JSON value per vector.

    >>> encode_as(np.array([[0.6, -0.8]]), "ubinary"), encode_as(np.array([[1.0]]), "base64")
    ([[128]], ['AACAPw=='])
    """
    return _FORMS[form](vectors)
