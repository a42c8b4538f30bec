"""Typed configuration of ``loupe train lite`` (read from a TOML or JSON file, then flags)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TriplesSource(_Strict):
    """MS MARCO triples: query, positive, negative per line."""

    kind: Literal["triples"] = "triples"
    path: Path
    limit: int | None = None


class QrelsSource(_Strict):
    """Judged queries with negatives from a run (BM25, a dense index ...), optionally a
    teacher run whose scores are distilled."""

    kind: Literal["qrels"] = "qrels"
    queries: Path
    qrels: Path
    corpus: Path
    negatives_run: Path
    split: str | None = None
    negative_depth: int = 50
    negatives_per_query: int = 16
    min_positive_grade: int = 1
    teacher_run: Path | None = None
    query_ids_file: Path | None = None
    """Keep only the query ids listed in this file (one per line), e.g. for k-fold."""


class ScorerOptions(_Strict):
    kind: Literal["maxsim", "separable", "flattened", "sorted"] = "sorted"
    top_k: int = 8
    sorted_hidden: int = 32
    row_hidden: int = 256
    row_out: int = 128
    col_hidden: int = 64
    col_out: int = 32
    flat_hidden: int = 256


class LiteTrainConfig(_Strict):
    out: Path
    backbone: str = "default"
    dim: int | None = 128
    q_len: int = 32
    d_len: int = 128
    scorer: ScorerOptions = Field(default_factory=ScorerOptions)
    train_backbone: bool = False
    """Fine-tune the backbone too (slow on a CPU); otherwise its token states are cached."""
    data: list[TriplesSource | QrelsSource] = Field(min_length=1)
    negatives: int = 7
    batch_size: int = 16
    in_batch_negatives: bool = True
    loss: Literal["ce", "kl", "margin_mse"] = "ce"
    distill_weight: float = 1.0
    """With a teacher: loss = ce + distill_weight * (kl or margin_mse)."""
    dev_fraction: float = 0.1
    max_steps: int = 1000
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    grad_accumulation: int = 1
    eval_every: int = 100
    patience: int | None = 5
    seed: int = 0
    cache: Path | None = None
    """Token-state cache file (.npz), reused across runs with the same backbone."""
    device: str | None = None
    resume: bool = True

    @model_validator(mode="after")
    def _check(self) -> LiteTrainConfig:
        if not 0 <= self.dev_fraction < 1:
            raise ValueError("dev_fraction must be in [0, 1)")
        if self.negatives < 1 or self.batch_size < 1:
            raise ValueError("negatives and batch_size must be at least 1")
        return self


def load_config_file(path: Path) -> dict[str, object]:
    """Read a TOML or JSON config file into a dict (paths relative to the file's folder stay
    as written: they are resolved from the working directory)."""
    text = path.read_text()
    if path.suffix == ".json":
        return dict(json.loads(text))
    return dict(tomllib.loads(text))
