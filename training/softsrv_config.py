"""Typed configuration of ``loupe train softsrv`` (TOML or JSON file, then flags)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from models.causal_lm import PACKAGED_GEMMA
from models.softsrv import PromptKind
from training.gmlm_data import PairSource
from training.run_config import RunSchedule


class SoftSRVTrainConfig(RunSchedule):
    """A contextual soft prompt for a frozen causal LM, trained on (passage, query) pairs
    (the pair sources of :mod:`training.gmlm_data`: qrels, triples, JSONL)."""

    data: list[PairSource] = Field(min_length=1)
    prompt: PromptKind = "mlp"
    prompt_length: int = 8
    mixture_size: int = 8
    hidden: int = 512
    lm: str = PACKAGED_GEMMA
    """Frozen causal LM: folder, hub name, .gguf file, or the packaged Gemma 3 270M."""
    lm_dtype: Literal["float32", "bfloat16"] = "float32"
    context_encoder: str = "default"
    """Encoder whose passage embedding is z ('default': the packaged MiniLM)."""
    context_cache: Path | None = None
    """File (.npz) caching z per passage text, reused across runs with the same encoder."""
    max_query_tokens: int = 40
    batch_size: int = 8
    dev_limit: int | None = 64
    """Score at most this many held-out pairs per dev evaluation (it runs the LM)."""
    max_steps: int = 300
    weight_decay: float = 0.0
    warmup_steps: int = 20
    eval_every: int = 50
    patience: int | None = 4

    @model_validator(mode="after")
    def _check_sizes(self) -> SoftSRVTrainConfig:
        if min(self.batch_size, self.prompt_length, self.max_query_tokens) < 1:
            raise ValueError("batch_size, prompt_length and max_query_tokens must be positive")
        return self
