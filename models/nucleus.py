"""Nucleus (top-p) sampling that does not sort the whole vocabulary.

Hugging Face's top-p warper sorts every row of the logits at every step and then samples
from the full distribution; for Gemma's 262k-token vocabulary that sort and the
multinomial draw cost more than the LM itself on a CPU. Here the nucleus is found among
the ``candidates`` most probable tokens (``topk``), falling back to a full sort only for a
row whose top candidates hold less than ``top_p`` of the mass, so the result is the exact
nucleus. :class:`NucleusSampler` draws the token inside the logits processor and leaves a
one-hot row, so ``generate`` runs greedy (argmax) on top of it; the draw uses the global
torch RNG (seed it for reproducible samples).
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor


def _sample_sorted(top: torch.Tensor, index: torch.Tensor, top_p: float) -> torch.Tensor:
    """Draw from the nucleus of descending probabilities ``top`` (``(batch, k)``) whose
    vocabulary ids are ``index``; returns ``(batch,)`` ids."""
    mass_before = top.cumsum(-1) - top
    top = top.masked_fill(mass_before >= top_p, 0.0)
    return index.gather(-1, torch.multinomial(top, 1)).squeeze(-1)


def _sample_wide_row(row: torch.Tensor, top_p: float) -> torch.Tensor:
    """One flat row ``(vocab,)``: sort only the tokens above a probability floor that still
    holds ``top_p`` of the mass (the nucleus lies within them), else the whole row."""
    for floor in (1e-5, 1e-7, 0.0):
        ids = (row >= floor).nonzero().squeeze(-1)
        if floor == 0.0 or float(row[ids].sum()) >= top_p:
            break
    values, order = row[ids].sort(descending=True)
    return _sample_sorted(values[None], ids[order][None], top_p)[0]


def nucleus_sample(
    logits: torch.Tensor, temperature: float, top_p: float, candidates: int = 512
) -> torch.Tensor:
    """Sample one token per row from the top-p nucleus of ``softmax(logits / temperature)``.

    The nucleus is the most probable tokens, in order, until their mass reaches ``top_p``
    (at least one token). Rows whose ``candidates`` most probable tokens hold that mass are
    sampled among those; the others (flat distributions) sort only the tokens above a
    probability floor that still holds the mass.

    Args:
        logits: ``(batch, vocab)``.

    Returns:
        ``(batch,)`` token ids.

    >>> logits = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 0.0]])
    >>> nucleus_sample(logits, 1.0, 0.5).tolist()  # the nucleus is the top token alone
    [1, 0]
    """
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    top, index = probs.topk(min(candidates, probs.shape[-1]), dim=-1)  # (batch, k), descending
    tokens = _sample_sorted(top, index, top_p)
    for row in (top.sum(-1) < top_p).nonzero().squeeze(-1).tolist():
        tokens[row] = _sample_wide_row(probs[row], top_p)  # the nucleus is wider than k
    return tokens


class NucleusSampler(LogitsProcessor):
    """Draws each next token by :func:`nucleus_sample` and returns logits that are -inf
    everywhere but at the drawn token (use with greedy ``generate``)."""

    def __init__(self, temperature: float, top_p: float, candidates: int = 512):
        if temperature <= 0 or not 0 < top_p <= 1:
            raise ValueError("nucleus sampling needs temperature > 0 and top_p in (0, 1]")
        self.temperature = temperature
        self.top_p = top_p
        self.candidates = candidates

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        token = nucleus_sample(scores, self.temperature, self.top_p, self.candidates)
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(-1, token.unsqueeze(-1), 0.0)
        return out  # type: ignore[return-value]
