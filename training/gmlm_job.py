"""``loupe train gmlm``: train the parallel query generator (or its autoregressive baseline).

Loss (parallel): cross-entropy on the noised target positions (PaDIR corruption), optionally
over unrolled stages that feed the model's own predictions back in, plus a weighted
cross-entropy of the length head. Autoregressive: teacher-forced next-token cross-entropy plus
the same length loss. A frozen encoder's states are computed once and cached on disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from models.device import pick_device
from models.encoder import length_sorted_batches
from models.gmlm import GenerativeMaskedLM
from training.distributed import current_world
from training.gmlm_config import GmlmTrainConfig
from training.gmlm_corruption import Targets, autoregressive_inputs, corrupt, make_targets
from training.gmlm_data import TextPair, load_pairs
from training.trainer import Trainer, TrainResult, seed_everything

log = logging.getLogger(__name__)


@dataclass
class GmlmBatch:
    source_states: torch.Tensor | None  # (batch, src_len, hidden) cached, frozen encoder
    source_ids: torch.Tensor  # (batch, src_len)
    source_mask: torch.Tensor  # (batch, src_len)
    targets: Targets


class SourceStateCache:
    """Frozen-encoder states of source texts, fp16, kept on disk between runs.

    Keyed by the backbone, the source length limit and each text's hash, so runs that share a
    backbone (the parallel model and its autoregressive baseline) encode each text once.
    """

    def __init__(self, path: Path, model: GenerativeMaskedLM):
        self.path = path
        self.model = model
        self.key = f"{model.backbone_path}|{model.config.max_source_length}"
        self.states: dict[str, torch.Tensor] = {}
        if path.is_file():
            stored = torch.load(path, weights_only=True)
            if stored.get("key") == [self.key]:
                self.states = dict(zip(stored["hashes"], stored["states"], strict=True))

    @staticmethod
    def text_hash(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    @torch.no_grad()
    def fill(self, texts: Sequence[str], batch_size: int = 16, show_progress: bool = True) -> None:
        todo = sorted({t for t in texts if self.text_hash(t) not in self.states})
        if not todo:
            return
        model = self.model
        lengths = [len(t) for t in todo]
        with tqdm(total=len(todo), desc="encoding sources", disable=not show_progress) as bar:
            for indices in length_sorted_batches(lengths, batch_size):
                chunk = [todo[i] for i in indices]
                batch = model.tokenize_sources(chunk)
                states = model.encode_states(batch["input_ids"], batch["attention_mask"])
                for text, row, mask in zip(chunk, states, batch["attention_mask"], strict=True):
                    self.states[self.text_hash(text)] = row[mask.bool()].half().cpu()
                bar.update(len(chunk))
        if not current_world().is_main:
            return  # rank 0 writes the file; every rank keeps its states in memory
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        hashes = list(self.states)
        torch.save(
            {"key": [self.key], "hashes": hashes, "states": [self.states[h] for h in hashes]}, tmp
        )
        tmp.replace(self.path)

    def batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(batch, src_len, hidden)`` float states and ``(batch, src_len)`` mask."""
        rows = [self.states[self.text_hash(t)] for t in texts]
        width = max(r.shape[0] for r in rows)
        states = torch.zeros(len(rows), width, rows[0].shape[1])
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, row in enumerate(rows):
            states[i, : row.shape[0]] = row.float()
            mask[i, : row.shape[0]] = 1
        return states, mask


def split_pairs(
    pairs: Sequence[TextPair], dev_fraction: float, seed: int
) -> tuple[list[TextPair], list[TextPair]]:
    """Hold out whole groups (a query's pairs never straddle the split)."""
    groups = sorted({p.group for p in pairs})
    random.Random(seed).shuffle(groups)
    dev_groups = set(groups[: round(len(groups) * dev_fraction)])
    return [p for p in pairs if p.group not in dev_groups], [
        p for p in pairs if p.group in dev_groups
    ]


class GmlmTraining(nn.Module):
    """The model and its training loss."""

    def __init__(self, config: GmlmTrainConfig):
        super().__init__()
        self.config = config
        seed_everything(config.seed)
        self.device_ = pick_device(config.device)
        self.model = GenerativeMaskedLM(config.gmlm_config()).to(self.device_)
        self.corruption = config.corruption()
        self.cache: SourceStateCache | None = None
        if config.freeze_encoder:
            path = config.source_cache or config.out / "source-states.pt"
            self.cache = SourceStateCache(path, self.model)

    def make_batch(self, pairs: Sequence[TextPair]) -> GmlmBatch:
        model = self.model
        special = model.special
        target_ids = model.tokenizer(
            [p.target for p in pairs], add_special_tokens=False, truncation=True, max_length=512
        )["input_ids"]
        targets = make_targets(target_ids, model.config.max_target_length, special.eos, special.pad)
        sources = [p.source for p in pairs]
        tokens = model.tokenize_sources(sources)
        ids, mask = tokens["input_ids"].cpu(), tokens["attention_mask"].cpu()
        if self.cache is not None:
            states, cached_mask = self.cache.batch(sources)
            if not torch.equal(cached_mask, mask):
                raise ValueError(f"{self.cache.path} does not match the tokenizer: delete it")
            return GmlmBatch(states, ids, mask, targets)
        return GmlmBatch(None, ids, mask, targets)

    def batches(self, pairs: Sequence[TextPair]) -> Iterator[GmlmBatch]:
        rng = random.Random(self.config.seed)
        order = list(range(len(pairs)))
        while True:
            rng.shuffle(order)
            for start in range(0, len(order) - self.config.batch_size + 1, self.config.batch_size):
                yield self.make_batch(
                    [pairs[i] for i in order[start : start + self.config.batch_size]]
                )

    def loss(self, batch: GmlmBatch, generator: torch.Generator | None = None) -> torch.Tensor:
        model, device = self.model, self.device_
        mask = batch.source_mask.to(device)
        ids = batch.source_ids.to(device)
        if batch.source_states is not None:
            states = batch.source_states.to(device)
        else:
            states = model.encode_states(ids, mask)
        source = model.prepare_source(states, mask, ids)
        targets = batch.targets
        length_loss = F.cross_entropy(model.length_logits(source), (targets.lengths - 1).to(device))
        valid, gold = targets.valid.to(device), targets.ids.to(device)
        if model.config.mode == "autoregressive":
            inputs = autoregressive_inputs(targets, model.special.bos).to(device)
            states = model.decode_states(source, inputs, valid)
            token_loss = F.nll_loss(model.token_log_probs(states, source, valid), gold[valid])
        else:
            corrupted = corrupt(
                targets,
                self.corruption,
                mask_id=model.special.mask,
                vocab_size=model.word_embeddings.weight.shape[0],
                banned=model.special.banned,
                generator=generator,
            )
            inputs, noised = corrupted.inputs.to(device), corrupted.noised.to(device)
            token_loss = torch.zeros((), device=device)
            for stage in range(self.config.unrolled_stages):
                states = model.decode_states(source, inputs, valid)
                log_probs = model.token_log_probs(states, source, noised)
                token_loss = token_loss + F.nll_loss(log_probs, gold[noised])
                if stage + 1 < self.config.unrolled_stages:
                    inputs = inputs.clone()
                    inputs[noised] = log_probs.detach().argmax(-1)
            token_loss = token_loss / self.config.unrolled_stages
        return token_loss + self.config.length_loss_weight * length_loss

    @torch.no_grad()
    def dev_metrics(self, dev: Sequence[TextPair]) -> dict[str, float]:
        """Mean dev loss under a fixed corruption draw (comparable across evaluations)."""
        generator = torch.Generator().manual_seed(self.config.seed)
        losses = []
        for start in range(0, len(dev), self.config.batch_size):
            batch = self.make_batch(dev[start : start + self.config.batch_size])
            losses.append(float(self.loss(batch, generator)))
        loss = sum(losses) / max(1, len(losses))
        return {"dev_loss": loss, "neg_dev_loss": -loss}


def train_gmlm(config: GmlmTrainConfig, *, show_progress: bool = True) -> TrainResult:
    """Train; the best model on held-out pairs (or the last) is saved in ``out/best``."""
    main = current_world().is_main
    if main:
        config.out.mkdir(parents=True, exist_ok=True)
        (config.out / "train_config.json").write_text(config.model_dump_json(indent=2))
    pairs = load_pairs(config.data)
    train, dev = split_pairs(pairs, config.dev_fraction, config.seed)
    if not train:
        raise ValueError("no training pairs left after holding out the dev split")
    if len(train) < config.batch_size:
        raise ValueError(
            f"{len(train)} training pairs is fewer than batch_size {config.batch_size}"
        )
    log.info("%d training and %d dev pairs", len(train), len(dev))
    job = GmlmTraining(config)
    if job.cache is not None:
        job.cache.fill([p.source for p in pairs], show_progress=show_progress)
    trainer = Trainer(
        config.trainer_config(has_dev=bool(dev), show_progress=show_progress),
        job.model,
        job.loss,
        job.batches(train),
        evaluate=(lambda: job.dev_metrics(dev)) if dev else None,
        metric="neg_dev_loss",
        save_best=job.model.save,
        device=job.device_,
    )
    result = trainer.train()
    summary = {
        "mode": config.mode,
        "train_pairs": len(train),
        "dev_pairs": len(dev),
        "steps": result.steps,
        "best_step": result.best_step,
        "best_dev_loss": None if result.best_metric is None else -result.best_metric,
    }
    if main:
        (config.out / "summary.json").write_text(json.dumps(summary, indent=2))
    return result


def load_gmlm_config(path: Path | None, overrides: dict[str, object]) -> GmlmTrainConfig:
    from training.run_config import config_from_file

    return config_from_file(GmlmTrainConfig, path, overrides)
