"""Targets and PaDIR-style target corruption for GMLM training (pure tensor functions).

A target of length L holds L-1 content tokens, EOS at L-1, then padding. Corruption draws a
noise density per example; each content position is noised with that probability (at least
one per example); a noised position is masked, replaced by a random token, or kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Targets:
    ids: torch.Tensor  # (batch, max_len) content, EOS, padding
    lengths: torch.Tensor  # (batch,) EOS included
    valid: torch.Tensor  # (batch, max_len) bool: position < length
    content: torch.Tensor  # (batch, max_len) bool: position < length - 1


def make_targets(token_ids: list[list[int]], max_length: int, eos_id: int, pad_id: int) -> Targets:
    """Content tokens (cut to ``max_length - 1``), EOS, right padding.

    >>> t = make_targets([[7, 8, 9], [5]], max_length=3, eos_id=2, pad_id=0)
    >>> t.ids.tolist(), t.lengths.tolist()
    ([[7, 8, 2], [5, 2, 0]], [3, 2])
    >>> t.content.tolist()
    [[True, True, False], [True, False, False]]
    """
    if max_length < 2:
        raise ValueError("max_length must leave room for a token and EOS")
    rows = [[*ids[: max_length - 1], eos_id] for ids in token_ids]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    positions = torch.arange(width)[None]
    return Targets(
        ids=ids,
        lengths=lengths,
        valid=positions < lengths[:, None],
        content=positions < (lengths[:, None] - 1),
    )


@dataclass(frozen=True)
class CorruptionConfig:
    min_density: float = 0.0
    max_density: float = 1.0
    mask_prob: float = 0.8
    """A noised position becomes [MASK] with this probability ..."""
    random_prob: float = 0.1
    """... a random vocabulary token with this one, and keeps its token otherwise."""

    def __post_init__(self) -> None:
        if not 0 <= self.min_density <= self.max_density <= 1:
            raise ValueError("need 0 <= min_density <= max_density <= 1")
        if self.mask_prob < 0 or self.random_prob < 0 or self.mask_prob + self.random_prob > 1:
            raise ValueError("mask_prob and random_prob must be >= 0 and sum to at most 1")


@dataclass(frozen=True)
class Corrupted:
    inputs: torch.Tensor  # (batch, max_len) decoder input ids
    noised: torch.Tensor  # (batch, max_len) bool: positions the loss is taken on
    density: torch.Tensor  # (batch,) the drawn noise density


def corrupt(
    targets: Targets,
    config: CorruptionConfig,
    *,
    mask_id: int,
    vocab_size: int,
    banned: tuple[int, ...] = (),
    generator: torch.Generator | None = None,
) -> Corrupted:
    """Noise the content positions of ``targets`` (EOS and padding are never touched).

    >>> t = make_targets([[7, 8, 9, 10]], max_length=8, eos_id=2, pad_id=0)
    >>> c = corrupt(t, CorruptionConfig(1.0, 1.0, 1.0, 0.0), mask_id=3, vocab_size=20)
    >>> c.inputs.tolist(), c.noised.tolist()
    ([[3, 3, 3, 3, 2]], [[True, True, True, True, False]])
    """
    batch, width = targets.ids.shape
    uniform = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    span = config.max_density - config.min_density
    density = config.min_density + span * uniform(batch)
    noised = (uniform(batch, width) < density[:, None]) & targets.content
    # at least one noised position per example with content: its least-likely draw
    empty = ~noised.any(1) & targets.content.any(1)
    if bool(empty.any()):
        draws = uniform(batch, width).masked_fill(~targets.content, 2.0)
        forced = torch.zeros_like(noised)
        forced[torch.arange(batch), draws.argmin(1)] = True
        noised |= forced & empty[:, None]
    action = uniform(batch, width)
    to_mask = noised & (action < config.mask_prob)
    to_random = noised & (action >= config.mask_prob)
    to_random &= action < config.mask_prob + config.random_prob
    random_tokens = torch.randint(0, vocab_size, (batch, width), generator=generator)
    if banned:
        is_banned = torch.isin(random_tokens, torch.tensor(banned, dtype=torch.long))
        random_tokens = random_tokens.masked_fill(is_banned, mask_id)
    inputs = targets.ids.clone()
    inputs[to_mask] = mask_id
    inputs[to_random] = random_tokens[to_random]
    return Corrupted(inputs=inputs, noised=noised, density=density)


def autoregressive_inputs(targets: Targets, bos_id: int) -> torch.Tensor:
    """Teacher-forcing inputs: BOS then the target shifted right by one.

    >>> t = make_targets([[7, 8]], max_length=4, eos_id=2, pad_id=0)
    >>> autoregressive_inputs(t, bos_id=1).tolist()
    [[1, 7, 8]]
    """
    bos = torch.full((targets.ids.shape[0], 1), bos_id, dtype=torch.long)
    return torch.cat([bos, targets.ids[:, :-1]], dim=1)
