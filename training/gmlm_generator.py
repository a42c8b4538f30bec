"""The GMLM parallel decoder as a synthetic-query generator for ``loupe generate --gmlm``
(the same pair files SoftSRV writes, so the training jobs read them alike)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from models.device import pick_device
from models.gmlm import GenerativeMaskedLM
from models.gmlm_decoding import DecodingConfig, generate, length_candidates_for
from models.prompted_lm import SamplingConfig


class GmlmQueryGenerator:
    """Queries by mask-predict; ``temperature`` 0 tries several lengths for distinct queries,
    above 0 samples tokens (``top_p`` does not apply: every position is drawn at once)."""

    def __init__(self, folder: Path, *, iterations: int = 4, device: str | None = None):
        self.model = GenerativeMaskedLM.load(folder, device=pick_device(device))
        self.iterations = iterations
        self.name = f"gmlm-T{iterations}"

    def decoding(self, sampling: SamplingConfig) -> DecodingConfig:
        n = sampling.num_per_prompt
        return DecodingConfig(
            iterations=self.iterations,
            length_candidates=length_candidates_for(n, sampling.temperature),
            num_generations=n,
            temperature=sampling.temperature,
            max_length=min(sampling.max_new_tokens, self.model.config.max_target_length - 1),
            seed=None,  # the caller seeds torch per batch
        )

    def generate(self, passages: Sequence[str], sampling: SamplingConfig) -> list[list[str]]:
        with torch.inference_mode():
            generations, _ = generate(self.model, list(passages), self.decoding(sampling))
        return [[g.text for g in row] for row in generations]
