"""The shared trainer loop: CPU bf16 autocast is opt-in."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from training.trainer import Trainer, TrainerConfig


@pytest.mark.parametrize("cpu_bf16", [False, True])
def test_cpu_bf16_switches_autocast_for_the_loss(tmp_path: Path, cpu_bf16: bool) -> None:
    model = nn.Linear(4, 1)
    seen: list[torch.dtype] = []

    def loss_fn(batch: torch.Tensor) -> torch.Tensor:
        out = model(batch)
        seen.append(out.dtype)
        return out.float().pow(2).mean()

    before = model.weight.detach().clone()
    config = TrainerConfig(
        out=tmp_path,
        max_steps=2,
        warmup_steps=0,
        eval_every=0,
        checkpoint_every=0,
        cpu_bf16=cpu_bf16,
        show_progress=False,
    )
    Trainer(config, model, loss_fn, iter(lambda: torch.randn(8, 4), None)).train()
    assert seen == [torch.bfloat16 if cpu_bf16 else torch.float32] * 2
    assert model.weight.dtype == torch.float32  # master weights stay fp32
    assert not torch.equal(model.weight, before)
