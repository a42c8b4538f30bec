"""Ranking losses, one per module."""

from __future__ import annotations

from training.losses.kl_distillation import kl_distillation_loss
from training.losses.listwise_ce import listwise_softmax_ce
from training.losses.margin_mse import margin_mse_loss

__all__ = ["kl_distillation_loss", "listwise_softmax_ce", "margin_mse_loss"]
