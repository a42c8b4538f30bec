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


class Interrupted(Exception):
    pass


def _regression_run(out: Path, interrupt_at: int | None) -> nn.Linear:
    """Ten steps with accumulation 2 over a fixed stream of distinct batches; the loss raises
    on its ``interrupt_at``-th call (a crash between checkpoints)."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    generator = torch.Generator().manual_seed(1)
    stream = iter([torch.randn(8, 4, generator=generator) for _ in range(20)])
    calls = 0

    def loss_fn(batch: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == interrupt_at:
            raise Interrupted
        return (model(batch) - batch.sum(1, keepdim=True)).pow(2).mean()

    config = TrainerConfig(
        out=out,
        max_steps=10,
        learning_rate=0.05,
        warmup_steps=2,
        grad_accumulation=2,
        eval_every=0,
        checkpoint_every=3,
        show_progress=False,
    )
    Trainer(config, model, loss_fn, stream).train()
    return model


def test_a_resumed_run_goes_on_where_the_stream_stopped(tmp_path: Path) -> None:
    """Interrupted at step 7 and resumed from the step-6 checkpoint, the run ends where an
    uninterrupted run does; replaying the stream from its start would train on other batches
    (and run out of this finite stream)."""
    whole = _regression_run(tmp_path / "whole", interrupt_at=None)
    with pytest.raises(Interrupted):
        _regression_run(tmp_path / "resumed", interrupt_at=15)
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt")["step"] == 6
    resumed = _regression_run(tmp_path / "resumed", interrupt_at=None)
    for name, value in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name
