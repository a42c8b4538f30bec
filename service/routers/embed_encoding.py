"""Vectors as base64 text: OpenAI's ``encoding_format="base64"`` and Cohere's ``base64``
embedding type, both little-endian float32 bytes."""

from __future__ import annotations

import base64

import numpy as np


def encode_base64(vector: np.ndarray) -> str:
    """Little-endian float32 bytes, base64.

    >>> encode_base64(np.array([1.0], dtype=np.float32))
    'AACAPw=='
    """
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
