"""Typed configuration of ``loupe train dual`` (TOML or JSON file, then flags)."""

from __future__ import annotations

from pydantic import model_validator

from training.run_config import TrainingRunConfig


class DualTrainConfig(TrainingRunConfig):
    model: str = "default"
    """Encoder to fine-tune: 'default' (packaged MiniLM), a folder or a Hugging Face name."""
    max_length: int = 128
    negatives: int = 3
    scale: float = 20.0
    """Cosine similarities are multiplied by this before the softmax (temperature 1/scale)."""
    gather_negatives: bool = True
    """Under torchrun: score each rank's queries against every rank's passages (in-batch
    negatives from the whole global batch, as one process with N times the batch would);
    false keeps them within the rank's own batch."""
    freeze_backbone: bool = False
    """With LAuReL: train only the LAuReL parameters."""
    learning_rate: float = 2e-5
    laurel_learning_rate: float = 1e-3

    @model_validator(mode="after")
    def _check_frozen(self) -> DualTrainConfig:
        if self.freeze_backbone and not self.laurel:
            raise ValueError("freeze_backbone leaves nothing to train without laurel")
        return self
