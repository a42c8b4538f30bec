"""SoftSRV training data: (passage, query) pairs from the pair sources, their context
vectors z (the dual encoder's passage embeddings, computed once and cached) and batches."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.encoder import EncoderConfig, TextEncoder
from training.distributed import current_world
from training.examples import Example
from training.gmlm_data import PairSource
from training.gmlm_data import load_pairs as load_text_pairs


def load_pairs(sources: Sequence[PairSource]) -> list[Example]:
    """(passage, query) pairs of every source, as examples without negatives whose
    ``query_id`` is the pair's group (pairs of one query stay on one side of a split)."""
    return [
        Example(query=p.target, positive=p.source, negatives=[], query_id=p.group)
        for p in load_text_pairs(sources)
    ]


def text_key(text: str) -> str:
    """Cache key of a text.

    >>> text_key("a")[:12]
    'ca978112ca1b'
    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ContextCache:
    """z per passage text: ``(context_dim,)`` unit vectors of the dual encoder, computed once
    and optionally kept in a ``.npz`` file for later runs with the same encoder."""

    def __init__(self, encoder: TextEncoder, path: Path | None = None):
        self.encoder = encoder
        self.path = path
        self.vectors: dict[str, np.ndarray] = {}
        if path is not None and path.is_file():
            with np.load(path) as data:
                if str(data["model"]) != encoder.model_name:
                    raise ValueError(
                        f"{path} caches vectors of {data['model']}, not {encoder.model_name}"
                    )
                self.vectors = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))

    @classmethod
    def open(cls, model: str, path: Path | None, device: str | None) -> ContextCache:
        return cls(TextEncoder(EncoderConfig(model=model, device=device)), path)

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def ensure(self, texts: Sequence[str], show_progress: bool = False) -> None:
        """Encode the texts not cached yet (and save the cache file if one is set)."""
        missing = sorted({t for t in texts if text_key(t) not in self.vectors})
        if not missing:
            return
        vectors = self.encoder.encode(missing, show_progress=show_progress, desc="encoding z")
        for text, vector in zip(missing, vectors, strict=True):
            self.vectors[text_key(text)] = vector
        if self.path is not None and current_world().is_main:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            keys = list(self.vectors)
            tmp = self.path.with_name(self.path.stem + ".tmp.npz")
            np.savez(
                tmp,
                model=np.array(self.encoder.model_name),
                keys=np.array(keys),
                vectors=np.stack([self.vectors[k] for k in keys]),
            )
            tmp.replace(self.path)

    def batch(self, texts: Sequence[str]) -> torch.Tensor:
        """``(len(texts), context_dim)`` float32 z, encoding any text not cached yet."""
        self.ensure(texts)
        return torch.from_numpy(np.stack([self.vectors[text_key(t)] for t in texts]))


@dataclass
class PairBatch:
    passages: list[str]
    queries: list[str]


def pair_batches(pairs: Sequence[Example], batch_size: int, seed: int) -> Iterator[PairBatch]:
    """Endless shuffled batches of (passage, query) pairs, every pair once per epoch."""
    rng = random.Random(seed)
    order: list[int] = []
    while True:
        if len(order) < batch_size:
            fresh = list(range(len(pairs)))
            rng.shuffle(fresh)
            order += fresh
        picked, order = order[:batch_size], order[batch_size:]
        yield PairBatch([pairs[i].positive for i in picked], [pairs[i].query for i in picked])
