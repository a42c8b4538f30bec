"""Typed training configuration shared by the jobs: data sources, the run's schedule, and
config files (TOML or JSON, ``$LOUPE_DATA_DIR`` expanded), which flags then override."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from string import Template
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from training.trainer import TrainerConfig


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TriplesSource(StrictModel):
    """MS MARCO triples: query, positive, negative per line."""

    kind: Literal["triples"] = "triples"
    path: Path
    limit: int | None = None


class QrelsSource(StrictModel):
    """Judged queries with negatives from a run (BM25, a dense index ...), optionally a
    teacher run whose scores are distilled."""

    kind: Literal["qrels"] = "qrels"
    queries: Path
    qrels: Path
    corpus: Path
    negatives_run: Path | None = None
    negatives_index: Path | None = None
    """Mine hard negatives from this index folder instead of reading ``negatives_run``."""
    split: str | None = None
    negative_depth: int = 50
    negatives_per_query: int = 16
    min_positive_grade: int = 1
    teacher_run: Path | None = None
    query_ids_file: Path | None = None
    """Keep only the query ids listed in this file (one per line), e.g. for k-fold."""

    @model_validator(mode="after")
    def _one_negative_source(self) -> QrelsSource:
        if (self.negatives_run is None) == (self.negatives_index is None):
            raise ValueError("give exactly one of negatives_run and negatives_index")
        return self


class SyntheticSource(StrictModel):
    """Generated (query, passage) pairs from ``loupe generate`` (rows the consistency filter
    dropped are skipped), mixed into the training examples only, never the dev split:
    ``ratio`` synthetic examples per real training example (a seeded sample; all of them
    when the file holds fewer). Negatives are mined from ``negatives_index``, read from
    ``negatives_run`` (keyed by the synthetic query ids), or else drawn at random from
    ``corpus``."""

    kind: Literal["synthetic"] = "synthetic"
    pairs: Path
    corpus: Path
    ratio: float = Field(default=1.0, ge=0)
    negatives_index: Path | None = None
    negatives_run: Path | None = None
    negative_depth: int = 50
    negatives_per_query: int = 16

    @model_validator(mode="after")
    def _one_negative_source(self) -> SyntheticSource:
        if self.negatives_index is not None and self.negatives_run is not None:
            raise ValueError("give at most one of negatives_index and negatives_run")
        return self


class RunSchedule(StrictModel):
    """The run's output folder and schedule, as every job's config has them."""

    out: Path
    dev_fraction: float = 0.1
    max_steps: int = 1000
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    grad_accumulation: int = 1
    eval_every: int = 100
    patience: int | None = 5
    seed: int = 0
    device: str | None = None
    resume: bool = True
    cpu_bf16: bool = False
    """bf16 autocast when training on the CPU (fast on CPUs with AMX / AVX512-BF16)."""

    @model_validator(mode="after")
    def _check_dev_fraction(self) -> RunSchedule:
        if not 0 <= self.dev_fraction < 1:
            raise ValueError("dev_fraction must be in [0, 1)")
        return self

    def trainer_config(self, *, has_dev: bool, show_progress: bool) -> TrainerConfig:
        """The shared trainer's settings; without dev examples, no evaluation or early stop."""
        return TrainerConfig(
            out=self.out,
            max_steps=self.max_steps,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            warmup_steps=self.warmup_steps,
            grad_accumulation=self.grad_accumulation,
            seed=self.seed,
            eval_every=self.eval_every if has_dev else 0,
            checkpoint_every=self.eval_every,
            patience=self.patience if has_dev else None,
            resume=self.resume,
            cpu_bf16=self.cpu_bf16,
            show_progress=show_progress,
        )


class TrainingRunConfig(RunSchedule):
    """What the re-ranker and dual-encoder jobs share: data, negatives, loss, LAuReL."""

    data: list[TriplesSource | QrelsSource | SyntheticSource] = Field(min_length=1)
    negatives: int = 7
    """Hard negatives per query (sampled from each example's pool), on top of in-batch ones."""
    batch_size: int = 16
    loss: Literal["ce", "kl", "margin_mse"] = "ce"
    distill_weight: float = 1.0
    """With a teacher: loss = ce + distill_weight * (kl or margin_mse)."""
    laurel: list[Literal["rw", "lr", "pa"]] | None = None
    """Add and train LAuReL residuals (e.g. ["rw", "lr"]) in the backbone."""
    laurel_rank: int = 16

    @model_validator(mode="after")
    def _check_schedule(self) -> TrainingRunConfig:
        if self.negatives < 1 or self.batch_size < 1:
            raise ValueError("negatives and batch_size must be at least 1")
        return self


def default_data_dir() -> str:
    """``$LOUPE_DATA_DIR``, else ``../shared/data`` beside the checkout."""
    return os.environ.get("LOUPE_DATA_DIR") or str(
        Path(__file__).resolve().parents[2] / "shared" / "data"
    )


def load_config_file(path: Path) -> dict[str, object]:
    """Read a TOML or JSON config file into a dict.

    ``$LOUPE_DATA_DIR`` (and other environment variables) in string values are expanded;
    relative paths are resolved from the working directory.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no such config file: {path}")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    mapping = {**os.environ, "LOUPE_DATA_DIR": default_data_dir()}
    return dict(_expand(data, mapping))


M = TypeVar("M", bound=BaseModel)


def config_from_file(model: type[M], path: Path | None, overrides: Mapping[str, object]) -> M:
    """A job's typed config: the file (if any), then ``overrides`` merged onto it by
    :func:`merged` (a table updates the file's table of that name key by key)."""
    data = load_config_file(path) if path is not None else {}
    return model.model_validate(merged(data, overrides))


def merged(base: Mapping[str, object], overrides: Mapping[str, object]) -> dict[str, object]:
    """``base`` with ``overrides`` applied: where both hold a table (dict) under one key the
    tables merge key by key, recursively; any other value replaces (None included).

    >>> merged({"scorer": {"kind": "maxsim", "hidden": 8}, "dim": 128},
    ...        {"scorer": {"kind": "sorted"}, "dim": None})
    {'scorer': {'kind': 'sorted', 'hidden': 8}, 'dim': None}
    """
    out = dict(base)
    for key, value in overrides.items():
        current = out.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            out[key] = merged(current, value)
        else:
            out[key] = value
    return out


def _expand(value: Any, mapping: dict[str, str]) -> Any:
    if isinstance(value, str):
        return Template(value).safe_substitute(mapping)
    if isinstance(value, list):
        return [_expand(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, mapping) for k, v in value.items()}
    return value
