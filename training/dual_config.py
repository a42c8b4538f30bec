"""Typed configuration of ``loupe train dual`` (TOML or JSON file, then flags)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from training.lite_config import QrelsSource, StrictModel, TriplesSource


class DualTrainConfig(StrictModel):
    out: Path
    model: str = "default"
    """Encoder to fine-tune: 'default' (packaged MiniLM), a folder or a Hugging Face name."""
    max_length: int = 128
    data: list[TriplesSource | QrelsSource] = Field(min_length=1)
    negatives: int = 3
    """Hard negatives per query (sampled from each example's pool), on top of in-batch ones."""
    batch_size: int = 16
    scale: float = 20.0
    """Cosine similarities are multiplied by this before the softmax (temperature 1/scale)."""
    loss: Literal["ce", "kl", "margin_mse"] = "ce"
    distill_weight: float = 1.0
    laurel: list[Literal["rw", "lr", "pa"]] | None = None
    """Add LAuReL residuals; with ``freeze_backbone`` only they (and nothing else) train."""
    laurel_rank: int = 16
    freeze_backbone: bool = False
    dev_fraction: float = 0.1
    max_steps: int = 1000
    learning_rate: float = 2e-5
    laurel_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    grad_accumulation: int = 1
    eval_every: int = 100
    patience: int | None = 5
    seed: int = 0
    device: str | None = None
    resume: bool = True

    @model_validator(mode="after")
    def _check(self) -> DualTrainConfig:
        if self.freeze_backbone and not self.laurel:
            raise ValueError("freeze_backbone leaves nothing to train without laurel")
        if not 0 <= self.dev_fraction < 1:
            raise ValueError("dev_fraction must be in [0, 1)")
        return self
