"""Typed configuration of ``loupe train gmlm`` (TOML or JSON file, then flags)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from models.gmlm import GmlmConfig
from training.gmlm_corruption import CorruptionConfig
from training.gmlm_data import JsonlPairs, QrelsPairs, TitlePairs, TriplesPairs
from training.run_config import RunSchedule


class GmlmTrainConfig(RunSchedule):
    data: list[QrelsPairs | TriplesPairs | TitlePairs | JsonlPairs] = Field(min_length=1)
    backbone: str = "default"
    mode: Literal["parallel", "autoregressive"] = "parallel"
    """'autoregressive' trains the baseline decoder of the same size on the same data."""
    decoder_layers: int = 2
    max_source_length: int = 256
    max_target_length: int = 32
    freeze_encoder: bool = True
    """A frozen encoder's states are computed once and cached (``source_cache``)."""
    source_cache: Path | None = None
    """File for the cached encoder states (default: OUT/source-states.pt); runs that share
    the backbone and data (e.g. the parallel model and its autoregressive baseline) can share
    it."""
    dropout: float = 0.1
    decoder_init: Literal["backbone", "random"] = "backbone"
    """Start the decoder from the backbone's first layers (BERT-style) or from scratch."""
    copy_head: bool = True
    """A pointer head that copies source tokens (mixed with the vocabulary softmax)."""
    min_density: float = 0.0
    max_density: float = 1.0
    mask_prob: float = 0.8
    random_prob: float = 0.1
    length_loss_weight: float = 0.1
    unrolled_stages: int = 1
    """Above 1: feed the model's own predictions at the noised positions back in and take the
    loss again (PaDIR's unrolled denoising); no gradient flows between stages."""
    batch_size: int = 32
    dev_fraction: float = 0.05
    max_steps: int = 2000
    learning_rate: float = 5e-4
    warmup_steps: int = 100
    eval_every: int = 200

    @model_validator(mode="after")
    def _check(self) -> GmlmTrainConfig:
        if self.unrolled_stages < 1 or self.batch_size < 1:
            raise ValueError("unrolled_stages and batch_size must be at least 1")
        self.gmlm_config()
        self.corruption()
        return self

    def gmlm_config(self) -> GmlmConfig:
        return GmlmConfig(
            backbone=self.backbone,
            mode=self.mode,
            decoder_layers=self.decoder_layers,
            max_source_length=self.max_source_length,
            max_target_length=self.max_target_length,
            freeze_encoder=self.freeze_encoder,
            dropout=self.dropout,
            decoder_init=self.decoder_init,
            copy_head=self.copy_head,
        )

    def corruption(self) -> CorruptionConfig:
        return CorruptionConfig(
            self.min_density, self.max_density, self.mask_prob, self.random_prob
        )
