"""Decoding with a :class:`~models.gmlm.GenerativeMaskedLM`.

Parallel (mask-predict, as in PaDIR): predict the target length, start from an all-mask target
with EOS at the predicted length (the top-k lengths are candidates), predict every position at
once, re-mask the least confident positions on a linear schedule (and stutters: a token equal
to its left neighbour), repeat; stop early when an iteration changes nothing; rank candidates
by length-normalised log-probability.

Autoregressive (the baseline): one token per step with a self-attention cache.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from models.gmlm import GenerativeMaskedLM
from models.gmlm_layers import SelfAttentionCache


@dataclass(frozen=True)
class DecodingConfig:
    iterations: int = 4
    """Parallel refinement passes (ignored by autoregressive decoding)."""
    length_candidates: int = 2
    num_generations: int = 1
    temperature: float = 0.0
    """0 picks the most likely token; above 0 samples (several generations differ)."""
    max_length: int | None = None
    """Cap on generated tokens (EOS excluded); None: the model's limit."""
    remask_stutter: bool = True
    early_stop: bool = True
    seed: int | None = 0

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.length_candidates < 1 or self.num_generations < 1:
            raise ValueError("iterations, length_candidates and num_generations must be >= 1")
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if self.max_length is not None and self.max_length < 1:
            raise ValueError("max_length must be >= 1")


def length_candidates_for(num_generations: int, temperature: float) -> int:
    """Length candidates that give ``num_generations`` distinct texts: argmax decoding writes
    one text per length, so it needs that many lengths; sampling draws several per length.

    >>> length_candidates_for(3, 0.0), length_candidates_for(1, 0.0), length_candidates_for(5, 1.0)
    (3, 2, 2)
    """
    return max(2, num_generations) if temperature == 0 else 2


@dataclass(frozen=True)
class Generation:
    text: str
    score: float
    """Mean log-probability per generated token (EOS included)."""
    token_ids: tuple[int, ...]


@dataclass(frozen=True)
class DecodingStats:
    iterations_run: int
    seconds: float


def remask_count(content_length: torch.Tensor, iteration: int, iterations: int) -> torch.Tensor:
    """How many positions to re-mask after pass ``iteration`` (0-based) of ``iterations``:
    the linear mask-predict schedule ``floor(n * (T - 1 - t) / T)``.

    >>> remask_count(torch.tensor([8, 5]), 0, 4).tolist()
    [6, 3]
    >>> [remask_count(torch.tensor([8]), t, 4).item() for t in range(4)]
    [6, 4, 2, 0]
    """
    remaining = max(0, iterations - 1 - iteration)
    return torch.div(content_length * remaining, iterations, rounding_mode="floor")


def stutter_positions(tokens: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """``(batch, len)`` bool: content positions whose token equals its left neighbour's.

    >>> stutter_positions(torch.tensor([[5, 5, 6, 6, 2]]), torch.tensor([[1, 1, 1, 1, 0]]).bool())
    tensor([[False,  True, False,  True, False]])
    """
    same = torch.zeros_like(content)
    same[:, 1:] = tokens[:, 1:] == tokens[:, :-1]
    return same & content


def lowest_confidence(
    log_probs: torch.Tensor, eligible: torch.Tensor, counts: torch.Tensor
) -> torch.Tensor:
    """``(batch, len)`` bool: in each row, the ``counts[row]`` eligible positions with the
    lowest log-probability.

    >>> lp = torch.tensor([[-0.1, -3.0, -0.5, -2.0]])
    >>> lowest_confidence(lp, torch.ones(1, 4, dtype=torch.bool), torch.tensor([2])).tolist()
    [[False, True, False, True]]
    """
    masked = log_probs.masked_fill(~eligible, math.inf)
    order = masked.argsort(dim=1)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return (ranks < counts[:, None]) & eligible


def initial_targets(
    lengths: torch.Tensor, mask_id: int, eos_id: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """All-mask targets with EOS at ``length - 1`` and padding after.

    Returns ids ``(batch, max_len)`` and the valid-position mask ``(batch, max_len)``.

    >>> ids, valid = initial_targets(torch.tensor([3, 1]), mask_id=9, eos_id=2, pad_id=0)
    >>> ids.tolist(), valid.tolist()
    ([[9, 9, 2], [2, 0, 0]], [[True, True, True], [True, False, False]])
    """
    width = int(lengths.max())
    positions = torch.arange(width, device=lengths.device)[None]
    valid = positions < lengths[:, None]
    ids = torch.full(valid.shape, pad_id, dtype=torch.long, device=lengths.device)
    ids[valid] = mask_id
    ids[positions == (lengths[:, None] - 1)] = eos_id
    return ids, valid


def _choose(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens and their log-probabilities from ``(..., vocab)`` logits."""
    log_probs = logits.log_softmax(-1)
    if temperature > 0:
        probs = (logits / temperature).softmax(-1)
        flat = probs.reshape(-1, probs.shape[-1])
        tokens = torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1])
    else:
        tokens = logits.argmax(-1)
    return tokens, log_probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def _banned_bias(model: GenerativeMaskedLM, allow_eos: bool) -> torch.Tensor:
    vocab = model.word_embeddings.weight.shape[0]
    bias = torch.zeros(vocab, device=model.device)
    bias[list(model.special.banned)] = -math.inf
    if not allow_eos:
        bias[model.special.eos] = -math.inf
    return bias


def _generator(config: DecodingConfig, device: torch.device) -> torch.Generator | None:
    if config.seed is None:
        return None
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed)
    return generator


@torch.no_grad()
def parallel_decode(
    model: GenerativeMaskedLM, texts: list[str], config: DecodingConfig
) -> tuple[list[list[Generation]], DecodingStats]:
    """Generate ``config.num_generations`` targets per source text by mask-predict."""
    started = time.perf_counter()
    model.eval()
    generator = _generator(config, model.device)
    source = model.encode(texts)
    limit = model.config.max_target_length
    if config.max_length is not None:
        limit = min(limit, config.max_length + 1)
    length_scores = model.length_logits(source).log_softmax(-1)[:, :limit]
    length_scores[:, 0] = -math.inf  # an empty target says nothing
    k = min(config.length_candidates, limit - 1)
    top_lengths = length_scores.topk(k, dim=1).indices + 1  # (batch, k)
    per_length = math.ceil(config.num_generations / k) if config.temperature > 0 else 1
    lengths = top_lengths.repeat_interleave(per_length, dim=1).reshape(-1)  # (batch * c,)
    candidates = k * per_length
    source = source.repeat(candidates)
    tokens, valid = initial_targets(
        lengths, model.special.mask, model.special.eos, model.special.pad
    )
    positions = torch.arange(tokens.shape[1], device=tokens.device)[None]
    content = positions < (lengths[:, None] - 1)
    log_probs = torch.zeros(tokens.shape, device=tokens.device)
    masked = content.clone()
    banned = _banned_bias(model, allow_eos=False)
    iterations_run = 0
    before_remask: torch.Tensor | None = None
    for iteration in range(config.iterations):
        iterations_run += 1
        states = model.decode_states(source, tokens, valid)
        # only the masked positions are predicted: (n_masked, vocab)
        logits = model.token_log_probs(states, source, masked) + banned
        new_tokens, new_log_probs = _choose(logits, config.temperature, generator)
        tokens, log_probs = tokens.clone(), log_probs.clone()
        tokens[masked] = new_tokens
        log_probs[masked] = new_log_probs
        unchanged = before_remask is not None and torch.equal(tokens, before_remask)
        if iteration == config.iterations - 1 or (config.early_stop and unchanged):
            break
        before_remask = tokens.clone()
        counts = remask_count(content.sum(1), iteration, config.iterations)
        masked = lowest_confidence(log_probs, content, counts)
        if config.remask_stutter:
            masked |= stutter_positions(tokens, content)
        tokens = tokens.masked_fill(masked, model.special.mask)
    scores = (log_probs * content).sum(1) / content.sum(1).clamp(min=1)
    results = _collect(model, tokens, content, scores, len(texts), candidates, config)
    return results, DecodingStats(iterations_run, time.perf_counter() - started)


@torch.no_grad()
def autoregressive_decode(
    model: GenerativeMaskedLM, texts: list[str], config: DecodingConfig
) -> tuple[list[list[Generation]], DecodingStats]:
    """Left-to-right decoding (greedy or sampled) with a self-attention cache."""
    if model.config.mode != "autoregressive":
        raise ValueError("autoregressive decoding needs a model trained with mode=autoregressive")
    started = time.perf_counter()
    model.eval()
    generator = _generator(config, model.device)
    candidates = config.num_generations if config.temperature > 0 else 1
    source = model.encode(texts).repeat(candidates)
    n = source.states.shape[0]
    limit = model.config.max_target_length
    if config.max_length is not None:
        limit = min(limit, config.max_length + 1)
    caches = [SelfAttentionCache() for _ in model.layers]
    current = torch.full((n, 1), model.special.bos, dtype=torch.long, device=model.device)
    banned = _banned_bias(model, allow_eos=True)
    no_eos = _banned_bias(model, allow_eos=False)
    finished = torch.zeros(n, dtype=torch.bool, device=model.device)
    out_tokens: list[torch.Tensor] = []
    out_log_probs: list[torch.Tensor] = []
    steps = 0
    for step in range(limit):
        steps += 1
        states = model.decode_states(source, current, caches=caches, offset=step)
        # the last allowed position must be EOS; earlier ones may not be EOS at step 0
        bias = banned if step > 0 else no_eos
        logits = model.token_log_probs(states, source)[:, -1] + bias
        if step == limit - 1:
            logits = torch.full_like(logits, -math.inf)
            logits[:, model.special.eos] = 0.0
        token, log_prob = _choose(logits, config.temperature, generator)
        token = token.masked_fill(finished, model.special.pad)
        out_tokens.append(token)
        out_log_probs.append(log_prob.masked_fill(finished, 0.0))
        finished |= token == model.special.eos
        if bool(finished.all()):
            break
        current = token[:, None]
    tokens = torch.stack(out_tokens, 1)
    log_probs = torch.stack(out_log_probs, 1)
    generated = (tokens != model.special.pad) & (tokens != model.special.eos)
    counted = tokens != model.special.pad
    scores = (log_probs * counted).sum(1) / counted.sum(1).clamp(min=1)
    results = _collect(model, tokens, generated, scores, len(texts), candidates, config)
    return results, DecodingStats(steps, time.perf_counter() - started)


def collapse_repeats(ids: list[int]) -> list[int]:
    """Drop a token equal to its left neighbour (parallel decoders' typical stutter).

    >>> collapse_repeats([4, 4, 5, 4, 4, 4])
    [4, 5, 4]
    """
    return [t for i, t in enumerate(ids) if i == 0 or t != ids[i - 1]]


def _collect(
    model: GenerativeMaskedLM,
    tokens: torch.Tensor,
    content: torch.Tensor,
    scores: torch.Tensor,
    batch: int,
    candidates: int,
    config: DecodingConfig,
) -> list[list[Generation]]:
    """Per source: distinct texts, best score first, at most ``num_generations``."""
    results: list[list[Generation]] = []
    for b in range(batch):
        best: dict[str, Generation] = {}
        for c in range(b * candidates, (b + 1) * candidates):
            ids = collapse_repeats(tokens[c][content[c]].tolist())
            text = str(model.tokenizer.decode(ids, skip_special_tokens=True)).strip()
            score = float(scores[c])
            if text and (text not in best or best[text].score < score):
                best[text] = Generation(text, score, tuple(ids))
        ranked = sorted(best.values(), key=lambda g: g.score, reverse=True)
        results.append(ranked[: config.num_generations])
    return results


def generate(
    model: GenerativeMaskedLM, texts: list[str], config: DecodingConfig
) -> tuple[list[list[Generation]], DecodingStats]:
    """Decode with the model's own mode: parallel mask-predict or autoregressive."""
    if model.config.mode == "parallel":
        return parallel_decode(model, texts, config)
    return autoregressive_decode(model, texts, config)
