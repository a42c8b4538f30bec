"""Backbone token states computed once per text, for training heads on a frozen backbone.

With the backbone frozen, a text's token states never change, so each is computed once
(float16) and the head trains on the cached states: hundreds of epochs cost what one
encoding pass costs. ``save``/``load`` keep the cache across runs. Under torchrun the ranks
share the encoding: each computes every ``size``-th batch and the states are exchanged, so
every rank ends with the whole cache, bit for bit what one process computes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from models.encoder import length_sorted_batches
from models.late_interaction import (
    DocumentWindows,
    LateInteractionModel,
    pad_matrices,
    stored_windows,
)
from training.distributed import World, from_each_rank

T = TypeVar("T")


def text_key(text: str, max_length: int) -> str:
    return hashlib.sha1(f"{max_length}\x00{text}".encode()).hexdigest()


def windows_key(text: str, window: int, overlap: int, windows: int) -> str:
    """Key of a text's first ``windows`` windows of ``window`` tokens sharing ``overlap``;
    one window is the text cut at ``window`` tokens, the states :meth:`TokenCache.ensure`
    keeps under ``text_key(text, window)``."""
    if windows == 1:
        return text_key(text, window)
    return text_key(f"{window}+{overlap}x{windows}\x00{text}", -1)


class TokenCache:
    def __init__(self) -> None:
        self._states: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._states)

    def __contains__(self, key: str) -> bool:
        return key in self._states

    @torch.inference_mode()
    def ensure(
        self,
        model: LateInteractionModel,
        texts: Iterable[str],
        max_length: int,
        *,
        batch_size: int = 32,
        show_progress: bool = True,
        desc: str = "caching token states",
        world: World | None = None,
    ) -> None:
        """Compute the states of the texts not cached yet (``world``: shared among its ranks,
        every one of which must call this with the same texts)."""
        world = world or World()
        missing = {text_key(t, max_length): t for t in texts}
        # in key order: which texts share a batch moves a state's fp16 bits slightly, so the
        # same texts must form the same batches whatever order (a set's) they come in
        items = sorted((k, t) for k, t in missing.items() if k not in self._states)
        lengths = [len(t) for _, t in items]
        batches = _share(list(length_sorted_batches(lengths, batch_size)), world)
        computed: dict[str, np.ndarray] = {}
        with tqdm(total=sum(map(len, batches)), desc=desc, disable=not show_progress) as bar:
            for ids in batches:
                raw = model.backbone_tokens([items[i][1] for i in ids], max_length)
                for row, i in enumerate(ids):
                    n = int(raw.mask[row].sum())
                    computed[items[i][0]] = raw.tokens[row, :n].to(torch.float16).cpu().numpy()
                bar.update(len(ids))
        self._add_from_every_rank(computed, world)

    @torch.inference_mode()
    def ensure_windows(
        self,
        model: LateInteractionModel,
        texts: Iterable[str],
        windows: int,
        *,
        batch_size: int = 32,
        show_progress: bool = True,
        desc: str = "caching passage windows",
        world: World | None = None,
    ) -> None:
        """Compute the states of the texts' windows not cached yet: up to ``windows`` of
        ``model``'s ``d_len``-token windows per text, stored end to end (``world``: see
        :meth:`ensure`)."""
        world = world or World()
        c = model.config
        overlap = c.window_overlap or 0
        missing = {windows_key(t, c.d_len, overlap, windows): t for t in texts}
        items = sorted((k, t) for k, t in missing.items() if k not in self._states)  # see ensure
        chunk = 16 * batch_size  # texts per call: progress in steps, bounded float32 memory
        chunks = _share([items[s : s + chunk] for s in range(0, len(items), chunk)], world)
        computed: dict[str, np.ndarray] = {}
        with tqdm(total=sum(map(len, chunks)), desc=desc, disable=not show_progress) as bar:
            for part in chunks:
                states = model.windowed_outputs(
                    [t for _, t in part], windows, lambda raw: raw.embeddings, batch_size
                )
                for (key, _), matrix in zip(part, states, strict=True):
                    computed[key] = matrix
                bar.update(len(states))
        self._add_from_every_rank(computed, world)

    def _add_from_every_rank(self, computed: dict[str, np.ndarray], world: World) -> None:
        """Keep the states this rank computed and those every other rank did (received one
        rank at a time, so the exchange holds one other rank's share at once)."""
        for states in from_each_rank(computed, world):
            self._states.update(states)

    def window_batch(
        self,
        texts: Sequence[str],
        model: LateInteractionModel,
        windows: int,
        device: torch.device | None = None,
    ) -> DocumentWindows:
        """The texts' cached raw window states, padded ``(windows, d_len, hidden)`` float32,
        as :meth:`ensure_windows` stored them for ``model``'s windowing."""
        c = model.config
        overlap = c.window_overlap or 0
        matrices = [self._states[windows_key(t, c.d_len, overlap, windows)] for t in texts]
        return stored_windows(matrices, c.d_len, device)

    def batch(
        self, texts: Sequence[str], max_length: int, device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded raw states ``(n, max_tokens, hidden)`` float32 and mask ``(n, max_tokens)``."""
        return pad_matrices([self._states[text_key(t, max_length)] for t in texts], device)

    def save(self, path: Path) -> None:
        keys = list(self._states)
        lengths = np.array([self._states[k].shape[0] for k in keys], dtype=np.int64)
        flat = np.concatenate([self._states[k] for k in keys]) if keys else np.zeros((0, 1))
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, keys=np.array(keys), lengths=lengths, states=flat)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> TokenCache:
        cache = cls()
        data = np.load(path)
        offsets = np.concatenate([[0], np.cumsum(data["lengths"])])
        states = data["states"]
        for i, key in enumerate(data["keys"]):
            cache._states[str(key)] = states[offsets[i] : offsets[i + 1]]
        return cache


def _share(batches: list[T], world: World) -> list[T]:
    """This rank's batches of a list every rank builds alike: every ``size``-th, from its
    rank on (all of them in a world of one).

    >>> _share([0, 1, 2, 3, 4], World(rank=1, size=2)), _share([0, 1], World())
    ([1, 3], [0, 1])
    """
    return batches[world.rank :: world.size]
