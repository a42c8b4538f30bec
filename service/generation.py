"""Query generation for ``/v1/generate``: a loaded GMLM and its batched decoding.

Requests with the same decoding settings are decoded together in one call (one encoder pass
and one set of parallel iterations for all of their texts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from models.gmlm import GenerativeMaskedLM
from models.gmlm_decoding import DecodingConfig, Generation, generate


@dataclass(frozen=True)
class GenerateJob:
    text: str
    config: DecodingConfig


@dataclass(frozen=True)
class GenerateOutcome:
    generations: list[Generation]
    iterations_run: int
    source_tokens: int


class QueryGenerator:
    """A GMLM (or its autoregressive baseline) behind the service's batcher."""

    def __init__(self, model: GenerativeMaskedLM, name: str):
        self.model = model
        self.name = name

    def source_tokens(self, text: str) -> int:
        ids = self.model.tokenizer(text, truncation=True, max_length=self.max_source_length)
        return len(ids["input_ids"])

    @property
    def max_source_length(self) -> int:
        return self.model.config.max_source_length

    @property
    def max_target_length(self) -> int:
        """Longest generation in tokens (EOS excluded)."""
        return self.model.config.max_target_length - 1

    def generate_many(self, jobs: Sequence[GenerateJob]) -> list[GenerateOutcome]:
        groups: dict[DecodingConfig, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(job.config, []).append(i)
        outcomes: list[GenerateOutcome | None] = [None] * len(jobs)
        with torch.inference_mode():
            for config, members in groups.items():
                texts = [jobs[i].text for i in members]
                generations, stats = generate(self.model, texts, config)
                for i, gens in zip(members, generations, strict=True):
                    outcomes[i] = GenerateOutcome(
                        gens, stats.iterations_run, self.source_tokens(jobs[i].text)
                    )
        return [o for o in outcomes if o is not None]
