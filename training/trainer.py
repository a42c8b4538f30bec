"""The shared training loop: AdamW with warm-up, accumulation, AMP on CUDA, seeded,
checkpoints and resume, a progress bar, and a dev evaluation every N steps that keeps the best.
Under ``torchrun`` it trains data-parallel (see ``training.distributed``).
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from training.distributed import (
    World,
    agreed_step,
    average_gradients,
    broadcast_parameters,
    current_world,
    from_main,
    main_decides,
    rank_share,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainerConfig:
    out: Path
    max_steps: int = 1000
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    grad_accumulation: int = 1
    max_grad_norm: float = 1.0
    seed: int = 0
    eval_every: int = 100
    checkpoint_every: int = 100
    patience: int | None = None
    """Stop after this many evaluations without a better dev score."""
    resume: bool = True
    mixed_precision: bool = True
    """bf16 autocast on CUDA."""
    cpu_bf16: bool = False
    """bf16 autocast on the CPU too (several times faster where the CPU has AMX or
    AVX512-BF16; the weights and the optimizer stay fp32)."""
    show_progress: bool = True


@dataclass
class TrainResult:
    steps: int
    best_step: int
    best_metric: float | None
    history: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def write_summary(out: Path, result: TrainResult, metric: str, **counts: int) -> None:
    """``out/summary.json`` (rank 0 only): ``counts`` (training and dev examples), the steps
    run and the best dev ``metric``."""
    if not current_world().is_main:
        return
    summary = {
        **counts,
        "steps": result.steps,
        "best_step": result.best_step,
        f"best_dev_{metric}": result.best_metric,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))


def warmup_linear(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: linear warm-up, then linear decay to zero.

    >>> [round(warmup_linear(s, 2, 10), 2) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def parameter_groups(
    module: nn.Module, config: TrainerConfig, learning_rates: dict[str, float]
) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases and norms; a learning rate for parameters whose
    name contains a key (first match wins, e.g. ``{".laurel.": 1e-3, "encoder.": 2e-5}``),
    ``config.learning_rate`` for the rest."""
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        lr = next((v for k, v in learning_rates.items() if k in name), config.learning_rate)
        decay = config.weight_decay if param.ndim >= 2 else 0.0
        groups.setdefault((lr, decay), []).append(param)
    if not groups:
        raise ValueError("nothing to train: no parameter requires a gradient")
    return [{"params": p, "lr": lr, "weight_decay": wd} for (lr, wd), p in groups.items()]


class Trainer:
    """Runs ``loss_fn(batch)`` over ``batches()`` with the parameters of ``module``.

    Args:
        module: owns the trainable parameters (those with ``requires_grad``).
        loss_fn: batch -> scalar loss tensor.
        batches: an endless iterator of batches (re-seeded per run). Under ``torchrun`` every
            rank builds the same stream and trains on its share of it.
        evaluate: returns dev metrics; ``metric`` names the one to maximise. Rank 0 alone
            evaluates, saves and checkpoints.
        save_best: writes the model when the dev metric improves (or at the end).
        world: the training processes; by default the initialised process group, if any.
    """

    def __init__(
        self,
        config: TrainerConfig,
        module: nn.Module,
        loss_fn: Callable[[Any], torch.Tensor],
        batches: Iterator[Any],
        *,
        evaluate: Callable[[], dict[str, float]] | None = None,
        metric: str | None = None,
        save_best: Callable[[Path], object] | None = None,
        device: torch.device | None = None,
        learning_rates: dict[str, float] | None = None,
        world: World | None = None,
    ):
        self.config = config
        self.module = module
        self.loss_fn = loss_fn
        self.world = world or current_world()
        self.stream = batches
        self.batches_drawn = 0  # taken from the stream by all ranks: a resumed run skips them
        self.evaluate = evaluate
        self.metric = metric
        self.save_best = save_best
        self.device = device or torch.device("cpu")
        self.optimizer = torch.optim.AdamW(
            parameter_groups(module, config, learning_rates or {}), lr=config.learning_rate
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: warmup_linear(s, config.warmup_steps, config.max_steps),
        )
        self.step = 0
        self.best_metric: float | None = None
        self.best_step = 0
        self.history: list[dict[str, float]] = []

    @property
    def checkpoint_path(self) -> Path:
        return self.config.out / "checkpoint.pt"

    def _autocast(self) -> Any:
        on_cuda = self.device.type == "cuda"
        enabled = self.config.mixed_precision if on_cuda else self.config.cpu_bf16
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        """What training changes (frozen backbone weights are not checkpointed)."""
        names = {n for n, p in self.module.named_parameters() if p.requires_grad}
        return {k: v for k, v in self.module.state_dict().items() if k in names}

    def save_checkpoint(self) -> None:
        self.config.out.mkdir(parents=True, exist_ok=True)
        state = {
            "step": self.step,
            "batches_drawn": self.batches_drawn,
            "module": self._trainable_state(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best_metric": self.best_metric,
            "best_step": self.best_step,
            "history": self.history,
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
        }
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint_path)

    def load_checkpoint(self) -> bool:
        if not (self.config.resume and self.checkpoint_path.is_file()):
            return False
        state = torch.load(self.checkpoint_path, weights_only=False)
        self.module.load_state_dict(state["module"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        # checkpoints from before this key: one process's draw
        self.batches_drawn = int(
            state.get("batches_drawn", self.step * self.config.grad_accumulation)
        )
        self.best_metric = state["best_metric"]
        self.best_step = int(state["best_step"])
        self.history = list(state["history"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        log.info("resumed from %s at step %d", self.checkpoint_path, self.step)
        return True

    def _evaluate(self) -> bool:
        """Run the dev evaluation; True when it is the best so far."""
        if self.evaluate is None:
            return False
        self.module.eval()
        with torch.no_grad():
            metrics = self.evaluate()
        self.module.train()
        self.history.append({"step": float(self.step), **metrics})
        value = metrics.get(self.metric or "", None)
        if value is None:
            return False
        if self.best_metric is None or value > self.best_metric:
            self.best_metric, self.best_step = value, self.step
            if self.save_best is not None:
                self.save_best(self.config.out / "best")
            return True
        return False

    def _finish(self) -> None:
        """The model (when no dev set chose one), the last checkpoint and the history."""
        cfg = self.config
        if self.evaluate is None and self.save_best is not None:
            self.save_best(cfg.out / "best")
        self.save_checkpoint()
        (cfg.out / "history.json").write_text(
            json.dumps(
                {
                    "config": {k: str(v) for k, v in asdict(cfg).items()},
                    "history": self.history,
                    "best_step": self.best_step,
                    "best_metric": self.best_metric,
                },
                indent=2,
            )
        )

    def train(self) -> TrainResult:
        cfg, world = self.config, self.world
        seed_everything(cfg.seed + world.rank)  # rank 0 draws as a single process would
        if self.load_checkpoint() and world.rank:
            torch.manual_seed(cfg.seed + world.rank + 1_000_003 * self.step)
        self.step = agreed_step(self.step, world, self.device)
        trainable = [p for p in self.module.parameters() if p.requires_grad]
        broadcast_parameters(trainable, world)
        for _ in range(self.batches_drawn):  # go on where the checkpoint left the stream
            next(self.stream)
        batches = rank_share(self.stream, world)
        drawn_per_step = cfg.grad_accumulation * world.size
        self.module.train()
        evals_without_gain = 0
        if self.step == 0 and self.evaluate is not None and world.is_main:
            self._evaluate()
        running = math.nan
        with tqdm(
            total=cfg.max_steps,
            initial=self.step,
            desc="training",
            disable=not (cfg.show_progress and world.is_main),
        ) as bar:
            while self.step < cfg.max_steps:
                total = 0.0
                for _ in range(cfg.grad_accumulation):
                    with self._autocast():
                        loss = self.loss_fn(next(batches)) / cfg.grad_accumulation
                    loss.backward()
                    total += float(loss.detach())
                total = average_gradients(trainable, total, world, self.device)
                torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                self.batches_drawn += drawn_per_step
                running = total if math.isnan(running) else 0.95 * running + 0.05 * total
                bar.set_postfix(loss=f"{running:.4f}")
                bar.update(1)
                stop = False
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    if world.is_main:
                        improved = self._evaluate()
                        evals_without_gain = 0 if improved else evals_without_gain + 1
                        stop = cfg.patience is not None and evals_without_gain >= cfg.patience
                        if self.history:
                            bar.set_postfix(
                                loss=f"{running:.4f}",
                                **{
                                    k: f"{v:.4f}"
                                    for k, v in self.history[-1].items()
                                    if k != "step"
                                },
                            )
                    stop = main_decides(stop, world, self.device)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and world.is_main:
                    self.save_checkpoint()
                if stop:
                    log.info(
                        "early stop at step %d (best %s at %d)",
                        self.step,
                        self.best_metric,
                        self.best_step,
                    )
                    break
        if world.is_main:
            self._finish()
        # every rank returns what rank 0 saw (it alone evaluates)
        result = TrainResult(self.step, self.best_step, self.best_metric, self.history)
        return from_main(result, world)
