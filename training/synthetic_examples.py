"""Training examples from synthetic pairs (:class:`~training.run_config.SyntheticSource`),
sampled to a mixing ratio against the real training examples."""

from __future__ import annotations

import random
from collections.abc import Sequence

from index.readers.corpus import read_corpus
from index.readers.trec import Qrels, Run, read_run
from training.examples import Example, examples_from_qrels
from training.run_config import SyntheticSource
from training.synthetic_pairs import read_pairs


def mixed_count(real: int, ratio: float, available: int) -> int:
    """Synthetic examples to mix in: ``ratio`` per real example, at most all of them.

    >>> mixed_count(100, 0.5, 1000), mixed_count(100, 2.0, 150), mixed_count(100, 0.0, 9)
    (50, 150, 0)
    """
    return min(available, round(real * ratio))


def synthetic_examples(source: SyntheticSource, real: int, seed: int) -> list[Example]:
    """A seeded sample of ``ratio * real`` kept pairs of the file, each with negatives."""
    pairs = read_pairs(source.pairs)
    rng = random.Random(seed)
    chosen = rng.sample(pairs, mixed_count(real, source.ratio, len(pairs)))
    if not chosen:
        return []
    queries = {p.query_id: p.query for p in chosen}
    qrels: Qrels = {p.query_id: {p.doc_id: 1} for p in chosen}
    if source.negatives_index is not None:
        from index.searcher import Searcher
        from training.mining import mine_hard_negatives

        searcher = Searcher.open(source.negatives_index)
        try:
            run = mine_hard_negatives(searcher, queries, qrels, depth=source.negative_depth)
        finally:
            searcher.reader.close()
        texts = {d.id: d.full_text for d in read_corpus(source.corpus)}
    elif source.negatives_run is not None:
        run = read_run(source.negatives_run)
        texts = {d.id: d.full_text for d in read_corpus(source.corpus)}
    else:
        texts = {d.id: d.full_text for d in read_corpus(source.corpus)}
        run = random_negatives(qrels, sorted(texts), source.negatives_per_query, rng)
    missing = sorted({p.doc_id for p in chosen} - texts.keys())
    if missing:
        raise ValueError(
            f"{source.pairs}: {len(missing)} passages are not in {source.corpus}, "
            f"e.g. {missing[0]!r}"
        )
    return examples_from_qrels(
        queries,
        qrels,
        texts,
        run,
        negatives_per_query=source.negatives_per_query,
        negative_depth=max(source.negative_depth, source.negatives_per_query),
    )


def random_negatives(qrels: Qrels, doc_ids: Sequence[str], count: int, rng: random.Random) -> Run:
    """A run of ``count`` random passages per query, none of them its positive."""
    run: Run = {}
    for qid, judged in qrels.items():
        picked: dict[str, float] = {}
        while len(picked) < min(count, len(doc_ids) - len(judged)):
            doc = rng.choice(doc_ids)
            if doc not in judged:
                picked[doc] = -float(len(picked))
        run[qid] = picked
    return run


def mix_synthetic(sources: Sequence[object], real_train: int, seed: int) -> list[Example]:
    """Synthetic examples of every :class:`SyntheticSource` among ``sources``."""
    examples: list[Example] = []
    for i, source in enumerate(sources):
        if isinstance(source, SyntheticSource):
            examples += synthetic_examples(source, real_train, seed + i)
    return examples
