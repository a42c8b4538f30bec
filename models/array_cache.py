"""An LRU cache of arrays, bounded in bytes: encodings that a fixed model gives a text.

A late-interaction re-ranker encodes a document without looking at the query, so a
document seen before (same text, same model) needs no transformer pass: its keys are a hash
of the model's fingerprint and the text (:func:`document_key`), its values the float16
``(tokens, dim)`` matrices. The service's engine keeps its queries' encodings the same way.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np


def document_key(fingerprint: str, text: str) -> str:
    """A stable key for a document's text under one model.

    >>> document_key("m1", "a") == document_key("m1", "a") != document_key("m2", "a")
    True
    """
    return hashlib.blake2b(f"{fingerprint}\x00{text}".encode(), digest_size=16).hexdigest()


class ArrayCache:
    """Thread-safe LRU holding at most ``max_bytes`` of arrays.

    >>> cache = ArrayCache(max_bytes=100)
    >>> cache.put("a", np.zeros((10, 2), np.float16))   # 40 bytes
    >>> cache.put("b", np.zeros((10, 2), np.float16))
    >>> _ = cache.get("a")                                # "a" is now the most recent
    >>> cache.put("c", np.zeros((10, 2), np.float16))   # evicts "b"
    >>> sorted(cache.keys()), cache.nbytes
    (['a', 'c'], 80)
    """

    def __init__(self, max_bytes: int):
        if max_bytes < 0:
            raise ValueError("max_bytes must be at least 0")
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._items)

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, matrix: np.ndarray) -> None:
        size = int(matrix.nbytes)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= int(old.nbytes)
            self._items[key] = matrix
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= int(evicted.nbytes)
