"""``loupe train softsrv``: train a contextual soft prompt that steers a frozen causal LM to
write a passage's query (SoftSRV, arXiv 2410.16534).

The loss is the LM's negative log-likelihood of the real query's tokens (and EOS) after
``[BOS] prompt(z)``, z being the passage's dual-encoder embedding. The LM is never a
submodule of the trained module: it stays in eval mode, takes no gradient, is never in the
optimizer and never in a checkpoint. The best prompt on held-out pairs (dev loss) lands in
``out/best`` as a small prompt folder (:mod:`models.softsrv`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from models.causal_lm import CausalLM, load_causal_lm
from models.device import pick_device
from models.prompted_lm import PromptedLM
from models.softsrv import SoftPromptConfig, SoftSRVSpec, build_soft_prompt, save_soft_prompt
from training.distributed import current_world
from training.examples import Example, split_by_query
from training.softsrv_config import SoftSRVTrainConfig
from training.softsrv_data import ContextCache, PairBatch, load_pairs, pair_batches
from training.trainer import Trainer, TrainResult, seed_everything

log = logging.getLogger(__name__)


class SoftSRVTraining(nn.Module):
    """The trainable prompt (the only submodule) and the loss through the frozen LM."""

    def __init__(self, config: SoftSRVTrainConfig, lm: CausalLM, contexts: ContextCache) -> None:
        super().__init__()
        self.config = config
        seed_everything(config.seed)
        self.generator = PromptedLM(lm)  # a plain attribute: not a submodule
        self.contexts = contexts
        self.prompt_config = SoftPromptConfig(
            kind=config.prompt,
            length=config.prompt_length,
            context_dim=contexts.dim,
            width=self.generator.width,
            mixture_size=config.mixture_size,
            hidden=config.hidden,
        )
        init = self.generator.token_prompts(
            self.prompt_config.initial_prompts, config.prompt_length, seed=config.seed
        )
        self.prompt = build_soft_prompt(self.prompt_config, init).to(lm.device)

    def loss(self, batch: PairBatch) -> torch.Tensor:
        z = self.contexts.batch(batch.passages).to(self.generator.lm.device)
        targets = self.generator.targets(batch.queries, self.config.max_query_tokens)
        return self.generator.loss(self.prompt(z), targets)

    @torch.no_grad()
    def dev_metrics(self, pairs: Sequence[Example]) -> dict[str, float]:
        """Mean token NLL of held-out queries (``dev_loss``), its negative (the metric the
        trainer maximises) and the perplexity."""
        total, tokens = 0.0, 0
        size = self.config.batch_size
        for start in range(0, len(pairs), size):
            chunk = pairs[start : start + size]
            z = self.contexts.batch([p.positive for p in chunk]).to(self.generator.lm.device)
            targets = self.generator.targets([p.query for p in chunk], self.config.max_query_tokens)
            total += float(self.generator.token_nll(self.prompt(z), targets).sum())
            tokens += int(targets.mask.sum())
        loss = total / max(tokens, 1)
        return {"dev_loss": loss, "neg_dev_loss": -loss, "dev_ppl": float(torch.tensor(loss).exp())}

    def spec(self) -> SoftSRVSpec:
        c = self.config
        return SoftSRVSpec(
            prompt=self.prompt_config,
            lm=self.generator.lm.name,
            context_encoder=c.context_encoder,
            lm_dtype=c.lm_dtype,
            max_query_tokens=c.max_query_tokens,
        )

    def save(self, folder: Path) -> None:
        save_soft_prompt(folder, self.prompt, self.spec())


def train_softsrv(
    config: SoftSRVTrainConfig, *, show_progress: bool = True, lm: CausalLM | None = None
) -> TrainResult:
    """Train; the best prompt on held-out pairs lands in ``out/best``, a summary (with
    training throughput) in ``out/summary.json``."""
    main = current_world().is_main
    if main:
        config.out.mkdir(parents=True, exist_ok=True)
        (config.out / "train_config.json").write_text(config.model_dump_json(indent=2))
    pairs = load_pairs(config.data)
    train, dev = split_by_query(pairs, config.dev_fraction, config.seed)
    if not train:
        raise ValueError("no training pairs left after holding out the dev queries")
    dev = dev[: config.dev_limit] if config.dev_limit is not None else dev
    device = pick_device(config.device)
    contexts = ContextCache.open(config.context_encoder, config.context_cache, config.device)
    contexts.ensure([p.positive for p in pairs], show_progress=show_progress)
    lm = lm or load_causal_lm(config.lm, device=device, dtype=config.lm_dtype)
    job = SoftSRVTraining(config, lm, contexts)
    trainer = Trainer(
        config.trainer_config(has_dev=bool(dev), show_progress=show_progress),
        job,
        job.loss,
        pair_batches(train, config.batch_size, config.seed),
        evaluate=(lambda: job.dev_metrics(dev)) if dev else None,
        metric="neg_dev_loss",
        save_best=job.save,
        device=device,
    )
    checkpoint = trainer.checkpoint_path
    start_step = (
        int(torch.load(checkpoint, weights_only=False)["step"])
        if config.resume and checkpoint.is_file()
        else 0
    )
    started = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - started
    steps = result.steps - start_step
    trained = steps * config.batch_size * config.grad_accumulation
    summary = {
        "train_pairs": len(train),
        "dev_pairs": len(dev),
        "prompt": config.prompt,
        "trainable_parameters": sum(p.numel() for p in job.prompt.parameters()),
        "steps": result.steps,
        "best_step": result.best_step,
        "best_dev_loss": -result.best_metric if result.best_metric is not None else None,
        "steps_this_run": steps,
        "seconds": round(seconds, 1),
        "examples_per_second_with_dev_evals": round(trained / seconds, 3) if seconds else None,
    }
    if main:
        (config.out / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("summary: %s", summary)
    return result


def load_softsrv_config(path: Path | None, overrides: dict[str, object]) -> SoftSRVTrainConfig:
    from training.run_config import config_from_file

    return config_from_file(SoftSRVTrainConfig, path, overrides)
