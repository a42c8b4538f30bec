"""A frozen causal LM driven by a prefix of vectors (a soft prompt) or by text (a hard
prompt): the likelihood of target texts after the prefix, and sampling after it.

Sequences are ``[BOS] prefix target [EOS]``; only the target tokens and EOS are scored, and
the LM head runs only on the positions that predict them (Gemma's vocabulary is 262k wide,
so the head costs more than the transformer body for a 270M model).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import LogitsProcessorList

from models.causal_lm import CausalLM
from models.nucleus import NucleusSampler


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample: ``temperature`` 0 means greedy; ``top_p`` nucleus sampling.

    ``fast_nucleus`` draws with :class:`models.nucleus.NucleusSampler` (the same
    distribution without sorting the vocabulary every step); False uses Hugging Face's
    sampling warpers.
    """

    max_new_tokens: int = 32
    temperature: float = 1.0
    top_p: float = 0.95
    num_per_prompt: int = 1
    fast_nucleus: bool = True

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.num_per_prompt < 1:
            raise ValueError("max_new_tokens and num_per_prompt must be at least 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")


@dataclass
class TargetBatch:
    """Tokenised targets, right-padded.

    Attributes:
        ids: ``(batch, length)`` token ids, EOS after each text, padding after that.
        mask: ``(batch, length)`` bool, True for scored tokens (text and EOS).
    """

    ids: torch.Tensor
    mask: torch.Tensor


def first_line(text: str) -> str:
    """A generation up to its first line break, stripped.

    >>> first_line("  what causes gout?\\nQuery: more")
    'what causes gout?'
    """
    return text.strip().split("\n", 1)[0].strip()


class PromptedLM:
    """Scores and samples text after a prefix, with every LM parameter frozen."""

    def __init__(self, lm: CausalLM):
        self.lm = lm
        self.model = lm.model
        self.tokenizer = lm.tokenizer
        if self.tokenizer.eos_token_id is None:
            raise ValueError(f"the tokenizer of {lm.name} has no EOS token")

    @property
    def width(self) -> int:
        return self.lm.width

    def embed_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """``(batch, n)`` ids -> ``(batch, n, width)`` input embeddings (scaled as the LM
        scales its own, e.g. Gemma's sqrt(width))."""
        return self.model.get_input_embeddings()(ids.to(self.lm.device))

    def token_prompts(self, count: int, length: int, seed: int = 0) -> torch.Tensor:
        """``(count, length, width)`` embeddings of random vocabulary tokens: a prompt
        initialisation at the LM's own scale."""
        generator = torch.Generator().manual_seed(seed)
        vocab = self.lm.embedding_table.shape[0]
        ids = torch.randint(0, vocab, (count, length), generator=generator)
        with torch.no_grad():
            return self.embed_ids(ids).float().cpu()

    def _bos(self, batch: int) -> torch.Tensor:
        """``(batch, 1, width)`` BOS embeddings, or ``(batch, 0, width)`` without a BOS."""
        bos = self.tokenizer.bos_token_id
        ids = torch.full((batch, 1 if bos is not None else 0), bos or 0, dtype=torch.long)
        return self.embed_ids(ids)

    def targets(self, texts: list[str], max_tokens: int) -> TargetBatch:
        """Tokenise targets (no special tokens), truncate to ``max_tokens`` and append EOS."""
        eos = int(self.tokenizer.eos_token_id)
        rows = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        rows = [[*r[:max_tokens], eos] for r in rows]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), eos, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = True
        return TargetBatch(ids, mask)

    def token_nll(self, prefix: torch.Tensor, targets: TargetBatch) -> torch.Tensor:
        """Negative log-likelihood of each target token after its prefix.

        Args:
            prefix: ``(batch, t, width)`` prompt vectors (gradients flow into them).
            targets: ``(batch, L)`` ids and mask.

        Returns:
            ``(batch, L)`` NLL per token, zero where ``targets.mask`` is False.
        """
        device = self.lm.device
        b, t, _ = prefix.shape
        ids, mask = targets.ids.to(device), targets.mask.to(device)
        start = self._bos(b)
        embeds = torch.cat([start, prefix.to(start.dtype), self.embed_ids(ids)], dim=1)
        attention = torch.cat(
            [torch.ones(b, start.shape[1] + t, dtype=torch.long, device=device), mask.long()],
            dim=1,
        )
        # the position before target token j is start + t - 1 + j
        first = start.shape[1] + t - 1
        keep = torch.arange(first, first + ids.shape[1], device=device)
        logits = self.model(
            inputs_embeds=embeds, attention_mask=attention, logits_to_keep=keep
        ).logits  # (b, L, vocab)
        nll = F.cross_entropy(logits.float().transpose(1, 2), ids, reduction="none")
        return nll * mask

    def loss(self, prefix: torch.Tensor, targets: TargetBatch) -> torch.Tensor:
        """Mean NLL over all scored target tokens of the batch (a scalar)."""
        return self.token_nll(prefix, targets).sum() / targets.mask.sum().clamp(min=1)

    def _generate_kwargs(self, sampling: SamplingConfig) -> dict[str, object]:
        greedy = sampling.temperature == 0
        kwargs: dict[str, object] = {
            "max_new_tokens": sampling.max_new_tokens,
            "do_sample": not greedy,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
        }
        if not greedy and sampling.fast_nucleus:
            sampler = NucleusSampler(sampling.temperature, sampling.top_p)
            kwargs |= {"do_sample": False, "logits_processor": LogitsProcessorList([sampler])}
        elif not greedy:
            kwargs |= {"temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": 0}
        return kwargs

    def _decode(self, ids: torch.Tensor, batch: int, per: int) -> list[list[str]]:
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return [[first_line(t) for t in texts[i * per : (i + 1) * per]] for i in range(batch)]

    @torch.no_grad()
    def sample(self, prefix: torch.Tensor, sampling: SamplingConfig) -> list[list[str]]:
        """``num_per_prompt`` texts for each of the ``(batch, t, width)`` prefixes (seed the
        global torch RNG first for reproducible samples)."""
        b, per = prefix.shape[0], sampling.num_per_prompt
        start = self._bos(b)
        embeds = torch.cat([start, prefix.to(start.device, start.dtype)], dim=1)
        embeds = embeds.repeat_interleave(per, dim=0)  # each prompt's samples side by side
        attention = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        out = self.lm.generate(
            inputs_embeds=embeds, attention_mask=attention, **self._generate_kwargs(sampling)
        )
        # with inputs_embeds alone, generate returns only the new tokens
        return self._decode(out, b, per)

    @torch.no_grad()
    def sample_text(
        self, prompts: list[str], sampling: SamplingConfig, max_prompt_tokens: int = 1024
    ) -> list[list[str]]:
        """Sample after text prompts (a hard prompt): left-padded, batched."""
        batch = self.tokenizer(
            prompts,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_prompt_tokens,
        ).to(self.lm.device)
        per = sampling.num_per_prompt
        batch = {k: v.repeat_interleave(per, dim=0) for k, v in batch.items()}
        out = self.lm.generate(**batch, **self._generate_kwargs(sampling))
        new = out[:, batch["input_ids"].shape[1] :]
        return self._decode(new, len(prompts), per)
