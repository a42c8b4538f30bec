"""``loupe train lite``: train a late-interaction re-ranker (LITE or MaxSim) on ranked data."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import ir_measures
import torch

from models.late_interaction import DocumentWindows, LateInteractionConfig, LateInteractionModel
from models.laurel import LaurelConfig, laurel_parameters
from training.batches import Batch, batches, split_training_data
from training.distributed import World, current_world, gather_padded
from training.examples import Example
from training.lite_config import LiteTrainConfig
from training.losses import kl_distillation_loss, listwise_softmax_ce, margin_mse_loss
from training.token_cache import TokenCache
from training.trainer import Trainer, TrainResult, seed_everything, write_summary

log = logging.getLogger(__name__)


class LiteTraining:
    """Holds the model, the token cache and the loss for one training run."""

    def __init__(self, config: LiteTrainConfig, token_cache: TokenCache | None = None):
        self.config = config
        seed_everything(config.seed)
        scorer = replace(config.scorer, q_len=config.q_len, d_len=config.d_len)
        arch = LateInteractionConfig(
            backbone=config.backbone,
            dim=config.dim,
            q_len=config.q_len,
            d_len=config.d_len,
            scorer=scorer,
            doc_windows=config.doc_windows,
            trainable_layers=config.trainable_layers,
            laurel=LaurelConfig(variants=tuple(config.laurel), rank=config.laurel_rank)
            if config.laurel
            else None,
        )
        self.model = LateInteractionModel(arch, device=config.device)
        self.model.encoder.backbone.model.requires_grad_(False)
        for layer in self.model.trainable_layers():
            layer.requires_grad_(True)
        for param in laurel_parameters(self.model.encoder.backbone.model):
            param.requires_grad_(True)
        self.cache: TokenCache | None = None
        if config.trainable_layers == 0 and not config.laurel:
            if token_cache is not None:
                self.cache = token_cache
            elif config.cache is not None and config.cache.is_file():
                self.cache = TokenCache.load(config.cache)
            else:
                self.cache = TokenCache()

    def prepare_cache(self, examples: Sequence[Example], show_progress: bool) -> None:
        if self.cache is None:
            return
        c = self.config
        before = len(self.cache)
        self.model.eval()
        world = current_world()  # the ranks share the encoding
        self.cache.ensure(
            self.model,
            {e.query for e in examples},
            c.q_len,
            show_progress=show_progress,
            desc="caching queries",
            world=world,
        )
        docs = {e.positive for e in examples} | {n for e in examples for n in e.negatives}
        if c.train_windows > 1:
            self.cache.ensure_windows(
                self.model, docs, c.train_windows, show_progress=show_progress, world=world
            )
        else:
            self.cache.ensure(
                self.model,
                docs,
                c.d_len,
                show_progress=show_progress,
                desc="caching passages",
                world=world,
            )
        if c.cache is not None and len(self.cache) > before and world.is_main:
            c.cache.parent.mkdir(parents=True, exist_ok=True)
            self.cache.save(c.cache)

    def encode(
        self, queries: Sequence[str], documents: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Projected ``(q, q_tokens, dim)`` queries and ``(n, d_tokens, dim)`` documents (their
        first ``d_len`` tokens), with masks."""
        q, q_mask = self.encode_queries(queries)
        c = self.config
        if self.cache is not None:
            d_raw, d_mask = self.cache.batch(documents, c.d_len, self.model.device)
            return q, q_mask, self.model.project(d_raw, d_mask), d_mask
        d = self.model.encode_documents(list(documents))
        return q, q_mask, d.tokens, d.mask

    def encode_queries(self, queries: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected ``(q, q_tokens, dim)`` queries and their mask."""
        if self.cache is not None:
            q_raw, q_mask = self.cache.batch(queries, self.config.q_len, self.model.device)
            return self.model.project(q_raw, q_mask), q_mask
        q = self.model.encode_queries(list(queries))
        return q.tokens, q.mask

    def encode_windows(self, documents: Sequence[str]) -> DocumentWindows:
        """The documents' projected windows (up to ``train_windows`` each)."""
        windows = self.config.train_windows
        if self.cache is None:
            return self.model.encode_document_windows(documents, windows)
        raw = self.cache.window_batch(documents, self.model, windows, self.model.device)
        return DocumentWindows(
            self.model.project(raw.tokens, raw.mask), raw.mask, raw.owners, raw.documents
        )

    def pool_scores(self, queries: Sequence[str], documents: Sequence[str]) -> torch.Tensor:
        """Scores ``(queries, documents)`` of every query against every document: its first
        ``d_len`` tokens, or with ``train_windows > 1`` its best window (MaxP)."""
        if self.config.train_windows > 1:
            q, q_mask = self.encode_queries(queries)
            return self.model.score_windows(q, q_mask, self.encode_windows(documents))
        q, q_mask, d, d_mask = self.encode(queries, documents)
        return self.model(q, q_mask, d, d_mask)

    def gathered_pool_scores(
        self, queries: Sequence[str], documents: Sequence[str], world: World
    ) -> tuple[torch.Tensor, int]:
        """:meth:`pool_scores` of this rank's queries against every rank's documents
        ``(queries, ranks * documents)``, rank by rank, with gradients flowing back to each
        rank's own; and where this rank's documents begin."""
        if self.config.train_windows > 1:
            q, q_mask = self.encode_queries(queries)
            windows = self.encode_windows(documents)
            tokens, _ = gather_padded(windows.tokens, world, pad_dims=(1,))
            mask, _ = gather_padded(windows.mask, world, pad_dims=(1,))
            offset = world.rank * windows.documents  # every rank holds as many documents
            owners, _ = gather_padded(windows.owners + offset, world)
            everyone = DocumentWindows(tokens, mask, owners, windows.documents * world.size)
            return self.model.score_windows(q, q_mask, everyone), offset
        q, q_mask, d, d_mask = self.encode(queries, documents)
        d_all, first = gather_padded(d, world, pad_dims=(1,))
        mask_all, _ = gather_padded(d_mask, world, pad_dims=(1,))
        return self.model(q, q_mask, d_all, mask_all), first

    def loss(self, batch: Batch) -> torch.Tensor:
        c = self.config
        group = 1 + c.negatives
        b = len(batch.queries)
        world = current_world()
        first = 0  # where this rank's passages begin in the pool
        pool: torch.Tensor | None = None  # (b, passages): every query against every passage
        if c.in_batch_negatives and c.gather_negatives and world.distributed:
            pool, first = self.gathered_pool_scores(batch.queries, batch.documents, world)
            mine = pool[:, first : first + b * group]
            own = mine.reshape(b, b, group)[torch.arange(b), torch.arange(b)]  # (b, group)
        elif c.in_batch_negatives or c.train_windows > 1:
            pool = self.pool_scores(batch.queries, batch.documents)
            own = pool.reshape(b, b, group)[torch.arange(b), torch.arange(b)]  # (b, group)
        else:
            q, q_mask, d, d_mask = self.encode(batch.queries, batch.documents)
            own = self.model(
                q, q_mask, d.reshape(b, group, *d.shape[1:]), d_mask.reshape(b, group, -1)
            )
        if c.in_batch_negatives and pool is not None:
            positives = first + torch.arange(b, device=pool.device) * group
            loss = listwise_softmax_ce(pool, positives)
        else:
            loss = listwise_softmax_ce(own, torch.zeros(b, dtype=torch.long, device=own.device))
        if batch.teacher is not None and c.loss != "ce":
            teacher = batch.teacher.to(own.device)
            distill = (
                kl_distillation_loss(own, teacher)
                if c.loss == "kl"
                else margin_mse_loss(own, teacher)
            )
            loss = loss + c.distill_weight * distill
        return loss

    @torch.no_grad()
    def rerank_metrics(self, examples: Sequence[Example]) -> dict[str, float]:
        """RR@10 and nDCG@10 of each held-out example's positive among its negatives."""
        qrels, run = {}, {}
        for i, ex in enumerate(examples):
            docs = [ex.positive, *ex.negatives]
            if self.config.train_windows > 1:
                scores = self.pool_scores([ex.query], docs)[0].tolist()
            else:
                q, q_mask, d, d_mask = self.encode([ex.query], docs)
                scores = self.model(q, q_mask, d[None], d_mask[None])[0].tolist()
            qrels[str(i)] = {"0": 1}
            run[str(i)] = {str(j): float(s) for j, s in enumerate(scores)}
        measures = [ir_measures.RR @ 10, ir_measures.nDCG @ 10]
        values = ir_measures.calc_aggregate(measures, qrels, run)
        return {str(m): float(v) for m, v in values.items()}


def train_lite(
    config: LiteTrainConfig,
    *,
    show_progress: bool = True,
    token_cache: TokenCache | None = None,
) -> TrainResult:
    """Train, keep the best model on held-out queries in ``out/best``, write a summary.

    ``token_cache``: frozen-backbone token states already in memory, used (and extended)
    instead of reading ``config.cache``; ignored when the backbone trains."""
    if current_world().is_main:
        config.out.mkdir(parents=True, exist_ok=True)
        (config.out / "train_config.json").write_text(config.model_dump_json(indent=2))
    examples, train, dev, with_teacher = split_training_data(config)
    log.info("%d training and %d dev examples", len(train), len(dev))
    job = LiteTraining(config, token_cache)
    job.prepare_cache(examples, show_progress)
    trainer = Trainer(
        config.trainer_config(has_dev=bool(dev), show_progress=show_progress),
        job.model,
        job.loss,
        batches(train, config.batch_size, config.negatives, config.seed, with_teacher),
        evaluate=(lambda: job.rerank_metrics(dev)) if dev else None,
        metric="nDCG@10",
        save_best=job.model.save,
        device=job.model.device,
        learning_rates={
            ".laurel.": config.learning_rate,
            "encoder.": config.backbone_learning_rate,
        },
    )
    result = trainer.train()
    write_summary(config.out, result, "nDCG@10", train_examples=len(train), dev_examples=len(dev))
    return result


def load_lite_config(path: Path | None, overrides: dict[str, object]) -> LiteTrainConfig:
    from training.run_config import config_from_file

    return config_from_file(LiteTrainConfig, path, overrides)
