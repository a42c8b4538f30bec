"""Scorers over the similarity matrix: MaxSim, separable LITE, flattened LITE, sorted LITE.

All take ``sim (batch, docs, q_tokens, d_tokens)`` with masks and return ``(batch, docs)``.

- ``separable`` (LITE paper, arXiv 2406.17968): S padded to fixed ``(q_len, d_len)``; a row
  MLP over the document-token axis, a column MLP over the query-token axis (each Linear,
  activation, LayerNorm, twice), then a linear read-out.
- ``flattened``: one MLP over the flattened fixed-size S.
- ``sorted``: a position-invariant LITE: each query token's top-k similarities, sorted, go
  through one small MLP shared by all query tokens, summed over the query, on top of
  MaxSim (the MLP's last layer starts at zero, so an untrained head *is* MaxSim).
- ``maxsim``: ColBERT's MaxSim times a learned temperature.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from models.scoring import maxsim, pair_mask, top_k_similarities

ScorerKind = Literal["maxsim", "separable", "flattened", "sorted"]


@dataclass(frozen=True)
class ScorerConfig:
    kind: ScorerKind = "sorted"
    q_len: int = 32
    d_len: int = 128
    row_hidden: int = 256
    row_out: int = 128
    col_hidden: int = 64
    col_out: int = 32
    flat_hidden: int = 256
    top_k: int = 8
    sorted_hidden: int = 32

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mlp_block(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    """Linear, activation, LayerNorm, twice (the LITE paper's MLP)."""
    return nn.Sequential(
        nn.Linear(inputs, hidden),
        nn.GELU(),
        nn.LayerNorm(hidden),
        nn.Linear(hidden, outputs),
        nn.GELU(),
        nn.LayerNorm(outputs),
    )


def _fixed_size(sim: torch.Tensor, valid: torch.Tensor, q_len: int, d_len: int) -> torch.Tensor:
    """Zero masked entries and truncate/zero-pad S to ``(..., q_len, d_len)``."""
    sim = sim.masked_fill(~valid, 0.0)[..., :q_len, :d_len]
    pad_q, pad_d = q_len - sim.shape[-2], d_len - sim.shape[-1]
    if pad_q or pad_d:
        sim = nn.functional.pad(sim, (0, pad_d, 0, pad_q))
    return sim


class MaxSimScorer(nn.Module):
    def __init__(self, config: ScorerConfig):
        super().__init__()
        self.config = config
        self.log_scale = nn.Parameter(torch.zeros(()))

    def forward(
        self, sim: torch.Tensor, q_mask: torch.Tensor, d_mask: torch.Tensor
    ) -> torch.Tensor:
        return maxsim(sim, q_mask, d_mask) * self.log_scale.exp()


class SeparableLite(nn.Module):
    def __init__(self, config: ScorerConfig):
        super().__init__()
        self.config = config
        self.rows = _mlp_block(config.d_len, config.row_hidden, config.row_out)
        self.cols = _mlp_block(config.q_len, config.col_hidden, config.col_out)
        self.readout = nn.Linear(config.row_out * config.col_out, 1)

    def forward(
        self, sim: torch.Tensor, q_mask: torch.Tensor, d_mask: torch.Tensor
    ) -> torch.Tensor:
        c = self.config
        s = _fixed_size(sim, pair_mask(q_mask, d_mask), c.q_len, c.d_len)  # (b, n, q_len, d_len)
        rows = self.rows(s)  # (b, n, q_len, row_out)
        cols = self.cols(rows.transpose(-1, -2))  # (b, n, row_out, col_out)
        return self.readout(cols.flatten(-2)).squeeze(-1)


class FlattenedLite(nn.Module):
    def __init__(self, config: ScorerConfig):
        super().__init__()
        self.config = config
        self.mlp = nn.Sequential(
            _mlp_block(config.q_len * config.d_len, config.flat_hidden, config.flat_hidden),
            nn.Linear(config.flat_hidden, 1),
        )

    def forward(
        self, sim: torch.Tensor, q_mask: torch.Tensor, d_mask: torch.Tensor
    ) -> torch.Tensor:
        c = self.config
        s = _fixed_size(sim, pair_mask(q_mask, d_mask), c.q_len, c.d_len)
        return self.mlp(s.flatten(-2)).squeeze(-1)


class SortedLite(nn.Module):
    def __init__(self, config: ScorerConfig):
        super().__init__()
        self.config = config
        hidden = nn.Linear(config.top_k, config.sorted_hidden)  # created first: seeded init
        readout = nn.Linear(config.sorted_hidden, 1)
        nn.init.zeros_(readout.weight)
        nn.init.zeros_(readout.bias)
        self.token_mlp = nn.Sequential(hidden, nn.GELU(), readout)
        self.log_scale = nn.Parameter(torch.zeros(()))

    def forward(
        self, sim: torch.Tensor, q_mask: torch.Tensor, d_mask: torch.Tensor
    ) -> torch.Tensor:
        features = top_k_similarities(sim, d_mask, self.config.top_k)  # (b, n, q, k)
        per_token = features[..., 0] + self.token_mlp(features).squeeze(-1)  # (b, n, q)
        q_valid = q_mask[:, None, :].to(sim.dtype)
        return (per_token * q_valid).sum(-1) * self.log_scale.exp()


SCORERS: dict[str, type[nn.Module]] = {
    "maxsim": MaxSimScorer,
    "separable": SeparableLite,
    "flattened": FlattenedLite,
    "sorted": SortedLite,
}


def build_scorer(config: ScorerConfig) -> nn.Module:
    if config.kind not in SCORERS:
        raise ValueError(f"unknown scorer {config.kind!r}; choose from {sorted(SCORERS)}")
    return SCORERS[config.kind](config)
