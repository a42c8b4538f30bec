"""``loupe train dual``: fine-tune the first-stage dual encoder (optionally with LAuReL).

Contrastive loss over each query's positive, its hard negatives and every other passage of
the batch (in-batch negatives), optional distillation from teacher scores, the shared
:class:`~training.trainer.Trainer`. The result is a plain encoder folder that
``loupe index build --model`` takes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import ir_measures
import torch
from torch import nn

from models.encoder import EncoderConfig, TextEncoder
from models.laurel import LaurelConfig, apply_laurel, laurel_parameters, save_laurel
from training.batches import Batch, batches, split_training_data
from training.distributed import current_world, gather_padded
from training.dual_config import DualTrainConfig
from training.examples import Example
from training.losses import kl_distillation_loss, listwise_softmax_ce, margin_mse_loss
from training.trainer import Trainer, TrainResult, seed_everything, write_summary

SENTENCE_FILES = ("sentence_bert_config.json", "modules.json", "config_sentence_transformers.json")


class DualEncoderTraining(nn.Module):
    """The trainable encoder and the contrastive loss."""

    def __init__(self, config: DualTrainConfig):
        super().__init__()
        self.config = config
        seed_everything(config.seed)
        self.encoder = TextEncoder(
            EncoderConfig(model=config.model, device=config.device, max_length=config.max_length)
        )
        self.backbone = self.encoder.backbone.model
        if config.laurel:
            apply_laurel(self.backbone, LaurelConfig(tuple(config.laurel), config.laurel_rank))
            self.backbone.to(self.encoder.device)  # type: ignore[arg-type]  # transformers' .to
        self.backbone.requires_grad_(not config.freeze_backbone)
        for param in laurel_parameters(self.backbone):
            param.requires_grad_(True)

    def embed(self, texts: list[str]) -> torch.Tensor:
        """``(n, dim)`` unit vectors, with gradients."""
        return self.encoder.pool(self.encoder.forward_tokens(self.encoder.tokenize(texts)))

    def loss(self, batch: Batch) -> torch.Tensor:
        c = self.config
        group = 1 + c.negatives
        queries = self.embed(batch.queries)  # (b, dim)
        documents = self.embed(batch.documents)  # (b * group, dim)
        b = len(batch.queries)
        world = current_world()
        if c.gather_negatives and world.distributed:
            documents, first = gather_padded(documents, world)  # (ranks * b * group, dim)
        else:
            first = 0
        scores = c.scale * queries @ documents.T  # (b, ranks * b * group)
        positives = first + torch.arange(b, device=scores.device) * group
        loss = listwise_softmax_ce(scores, positives)
        if batch.teacher is not None and c.loss != "ce":
            mine = scores[:, first : first + b * group]  # (b, b * group): this rank's passages
            own = mine.reshape(b, b, group)[torch.arange(b), torch.arange(b)]
            teacher = batch.teacher.to(own.device)
            loss = loss + c.distill_weight * (
                kl_distillation_loss(own, teacher)
                if c.loss == "kl"
                else margin_mse_loss(own, teacher)
            )
        return loss

    @torch.no_grad()
    def dev_metrics(self, examples: list[Example]) -> dict[str, float]:
        """RR@10 and nDCG@10 of each held-out positive among its negatives."""
        qrels, run = {}, {}
        for i, ex in enumerate(examples):
            q = self.embed([ex.query])[0]
            d = self.embed([ex.positive, *ex.negatives])
            qrels[str(i)] = {"0": 1}
            run[str(i)] = {str(j): float(s) for j, s in enumerate((d @ q).tolist())}
        values = ir_measures.calc_aggregate(
            [ir_measures.RR @ 10, ir_measures.nDCG @ 10], qrels, run
        )
        return {str(m): float(v) for m, v in values.items()}

    def save(self, folder: Path) -> None:
        """A plain encoder folder (weights, tokenizer, pooling), plus LAuReL files if any."""
        folder.mkdir(parents=True, exist_ok=True)
        base = Path(self.encoder.backbone.path)
        # the plain weights only: LAuReL's go to their own file, so the folder loads as an
        # ordinary Hugging Face model (without "unexpected keys") and Loupe re-applies LAuReL
        plain = {k: v for k, v in self.backbone.state_dict().items() if ".laurel." not in k}
        self.backbone.save_pretrained(folder, state_dict=plain)
        self.encoder.backbone.tokenizer.save_pretrained(folder)
        for name in SENTENCE_FILES:
            if (base / name).is_file():
                shutil.copy(base / name, folder / name)
        if (base / "1_Pooling").is_dir():
            shutil.copytree(base / "1_Pooling", folder / "1_Pooling", dirs_exist_ok=True)
        if self.config.laurel:
            save_laurel(self.backbone, folder)


def train_dual(config: DualTrainConfig, *, show_progress: bool = True) -> TrainResult:
    """Train; the best encoder on held-out queries lands in ``out/best``."""
    if current_world().is_main:
        config.out.mkdir(parents=True, exist_ok=True)
        (config.out / "train_config.json").write_text(config.model_dump_json(indent=2))
    _, train, dev, with_teacher = split_training_data(config)
    job = DualEncoderTraining(config)
    trainer = Trainer(
        config.trainer_config(has_dev=bool(dev), show_progress=show_progress),
        job,
        job.loss,
        batches(train, config.batch_size, config.negatives, config.seed, with_teacher),
        evaluate=(lambda: job.dev_metrics(dev)) if dev else None,
        metric="nDCG@10",
        save_best=job.save,
        device=job.encoder.device,
        learning_rates={".laurel.": config.laurel_learning_rate},
    )
    result = trainer.train()
    write_summary(config.out, result, "nDCG@10", train_examples=len(train), dev_examples=len(dev))
    return result


def load_dual_config(path: Path | None, overrides: dict[str, object]) -> DualTrainConfig:
    from training.run_config import config_from_file

    return config_from_file(DualTrainConfig, path, overrides)
