"""BM25 (bm25s) as a second first stage, built beside the FAISS index.

Lower-cased word tokens, English stop words, Snowball/Porter-style stemming (PyStemmer);
k1=0.9, b=0.4, the Anserini defaults. Static: built with the index, not updated live.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np
import Stemmer

KEYS_NAME = "keys.npy"
PARAMS_NAME = "loupe_bm25.json"


class BM25Index:
    def __init__(self, retriever: bm25s.BM25, keys: np.ndarray):
        self.retriever = retriever
        self.keys = keys
        self.stemmer = Stemmer.Stemmer("english")

    @classmethod
    def build(
        cls, keys: Sequence[int], texts: Sequence[str], *, k1: float = 0.9, b: float = 0.4
    ) -> BM25Index:
        if len(keys) != len(texts):
            raise ValueError("one key per text is required")
        stemmer = Stemmer.Stemmer("english")
        tokens = bm25s.tokenize(
            list(texts), stopwords="en", stemmer=stemmer.stemWords, show_progress=False
        )
        retriever = bm25s.BM25(k1=k1, b=b)
        retriever.index(tokens, show_progress=False)
        return cls(retriever, np.asarray(keys, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.keys)

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores (q, k), keys (q, k))``; key -1 and score -inf past the end."""
        k_eff = min(k, len(self.keys))
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        keys = np.full((len(queries), k), -1, dtype=np.int64)
        if k_eff == 0 or not queries:
            return scores, keys
        tokens = bm25s.tokenize(
            list(queries), stopwords="en", stemmer=self.stemmer.stemWords, show_progress=False
        )
        positions, found = self.retriever.retrieve(tokens, k=k_eff, show_progress=False)
        for row in range(len(queries)):
            hit = found[row] > 0  # BM25 gives 0 to documents sharing no term with the query
            n = int(hit.sum())
            scores[row, :n] = found[row][hit]
            keys[row, :n] = self.keys[positions[row][hit]]
        return scores, keys

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.retriever.save(str(folder), show_progress=False)
        np.save(folder / KEYS_NAME, self.keys)
        (folder / PARAMS_NAME).write_text(json.dumps({"stemmer": "english", "stopwords": "en"}))

    @classmethod
    def load(cls, folder: Path) -> BM25Index:
        retriever = bm25s.BM25.load(str(folder), show_progress=False)
        return cls(retriever, np.load(folder / KEYS_NAME))
