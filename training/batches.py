"""Training batches from the configured sources: examples, the dev split, sampled negatives."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from training.examples import Example, examples_from_triples, load_qrels_examples, split_by_query
from training.run_config import QrelsSource, SyntheticSource, TrainingRunConfig, TriplesSource
from training.synthetic_examples import mix_synthetic


@dataclass
class Batch:
    queries: list[str]
    documents: list[str]  # query i's candidates at [i*(1+k), (i+1)*(1+k)), positive first
    teacher: torch.Tensor | None  # (batch, 1+k)


def load_examples(
    sources: Sequence[TriplesSource | QrelsSource | SyntheticSource],
) -> list[Example]:
    """The real examples of the sources (synthetic ones are mixed in by
    :func:`split_training_data`, into the training side only)."""
    examples: list[Example] = []
    for source in sources:
        if isinstance(source, SyntheticSource):
            continue
        if isinstance(source, TriplesSource):
            examples += examples_from_triples(source.path, source.limit)
        else:
            ids = None
            if source.query_ids_file is not None:
                ids = source.query_ids_file.read_text().split()
            examples += load_qrels_examples(
                source.queries,
                source.qrels,
                source.corpus,
                source.negatives_run,
                negatives_index=source.negatives_index,
                split=source.split,
                negatives_per_query=source.negatives_per_query,
                negative_depth=source.negative_depth,
                min_positive_grade=source.min_positive_grade,
                teacher_path=source.teacher_run,
                query_ids=ids,
            )
    if not examples:
        raise ValueError(
            "the training sources yield no example (no query with a positive and a negative)"
        )
    return examples


def batches(
    examples: list[Example], batch_size: int, negatives: int, seed: int, with_teacher: bool
) -> Iterator[Batch]:
    """Endless batches; each example contributes its positive and ``negatives`` sampled
    negatives (with replacement only when its pool is smaller)."""
    rng = random.Random(seed)
    order: list[int] = []
    while True:
        if len(order) < batch_size:
            fresh = list(range(len(examples)))
            rng.shuffle(fresh)
            order += fresh
        picked, order = order[:batch_size], order[batch_size:]
        queries, documents, teacher_rows = [], [], []
        for i in picked:
            ex = examples[i]
            pool = list(range(len(ex.negatives)))
            chosen = (
                rng.sample(pool, negatives)
                if len(pool) >= negatives
                else [rng.choice(pool) for _ in range(negatives)]
            )
            queries.append(ex.query)
            documents += [ex.positive] + [ex.negatives[j] for j in chosen]
            if with_teacher:
                teacher_rows.append(
                    [ex.teacher_positive or 0.0] + [ex.teacher_negatives[j] for j in chosen]
                )
        teacher = torch.tensor(teacher_rows) if with_teacher else None
        yield Batch(queries, documents, teacher)


def split_training_data(
    config: TrainingRunConfig,
) -> tuple[list[Example], list[Example], list[Example], bool]:
    """``(all, train, dev, with_teacher)``: whole queries held out for dev; synthetic pairs
    join the training side only, at their sources' mixing ratios; a distillation loss
    requires teacher scores on every training example."""
    examples = load_examples(config.data)
    train, dev = split_by_query(examples, config.dev_fraction, config.seed)
    if not train:
        raise ValueError("no training examples left after holding out the dev queries")
    synthetic = mix_synthetic(config.data, len(train), config.seed)
    train, examples = train + synthetic, examples + synthetic
    with_teacher = config.loss != "ce"
    if with_teacher and not all(e.teacher_positive is not None for e in train):
        raise ValueError(
            f"loss {config.loss!r} needs teacher scores on every example "
            "(set teacher_run on the qrels sources)"
        )
    return examples, train, dev, with_teacher
