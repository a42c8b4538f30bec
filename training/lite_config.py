"""Typed configuration of ``loupe train lite`` (read from a TOML or JSON file, then flags)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from models.lite import ScorerConfig
from training.run_config import TrainingRunConfig


class LiteTrainConfig(TrainingRunConfig):
    backbone: str = "default"
    dim: int | None = 128
    q_len: int = 32
    d_len: int = 128
    scorer: ScorerConfig = Field(default_factory=ScorerConfig)
    """The scorer (``kind`` and its sizes); its ``q_len``/``d_len`` follow the fields above."""
    doc_windows: int = Field(8, ge=1)
    """How the trained model reads a document longer than ``d_len`` at inference: up to
    this many ``d_len``-token windows, scored as its best window."""
    train_windows: int = Field(1, ge=1)
    """Windows training reads per passage: 1 reads its first ``d_len`` tokens; more read up
    to that many windows and score the passage as its best one, as inference does (at most
    ``doc_windows``)."""
    backbone_learning_rate: float = 2e-5
    trainable_layers: int = 0
    """Fine-tune the backbone's top N layers too (slow on a CPU); with 0 and no LAuReL the
    backbone is frozen and its token states are cached."""
    in_batch_negatives: bool = True
    gather_negatives: bool = True
    """Under torchrun, with in-batch negatives: score each rank's queries against every
    rank's passages, as one process with N times the batch would; false keeps them within
    the rank's own batch."""
    cache: Path | None = None
    """Token-state cache file (.npz), reused across runs with the same backbone."""

    @model_validator(mode="after")
    def _train_within_inference_windows(self) -> LiteTrainConfig:
        if self.train_windows > self.doc_windows:
            raise ValueError(
                f"train_windows={self.train_windows} exceeds doc_windows={self.doc_windows}: "
                "training would read windows the trained model never reads"
            )
        return self
