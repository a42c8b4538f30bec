"""Training examples for re-rankers and dual encoders, from the usual data sources.

An example is one query with one positive passage, a pool of negative passages and, for
distillation, teacher scores for positive and negatives.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from index.readers.corpus import read_corpus
from index.readers.queries import read_queries
from index.readers.trec import Qrels, Run, ranked, read_qrels, read_run
from index.readers.triples import read_triples


@dataclass
class Example:
    query: str
    positive: str
    negatives: list[str]
    teacher_positive: float | None = None
    teacher_negatives: list[float] = field(default_factory=list)
    query_id: str | None = None


def examples_from_triples(path: str | Path, limit: int | None = None) -> list[Example]:
    """MS MARCO triples: each line is one example with one negative; lines sharing a query
    are merged, so its negatives pool together."""
    merged: dict[tuple[str, str], Example] = {}
    for i, triple in enumerate(read_triples(path)):
        if limit is not None and i >= limit:
            break
        key = (triple.query, triple.positive)
        example = merged.setdefault(key, Example(triple.query, triple.positive, []))
        if triple.negative not in example.negatives:
            example.negatives.append(triple.negative)
    return list(merged.values())


def examples_from_qrels(
    queries: Mapping[str, str],
    qrels: Qrels,
    corpus_texts: Mapping[str, str],
    negatives_run: Run,
    *,
    negatives_per_query: int = 16,
    negative_depth: int = 50,
    min_positive_grade: int = 1,
    teacher: Run | None = None,
) -> list[Example]:
    """One example per (query, judged-relevant passage); negatives are the run's top
    ``negative_depth`` passages that are not judged relevant (known positives are skipped).

    With ``teacher`` (a run with scores), each passage carries the teacher's score; passages
    the teacher did not score get its minimum for that query.
    """
    examples: list[Example] = []
    for qid, text in queries.items():
        judged = qrels.get(qid, {})
        positives = [d for d, g in judged.items() if g >= min_positive_grade and d in corpus_texts]
        if not positives:
            continue
        candidates = [d for d, _ in ranked(negatives_run.get(qid, {}), negative_depth)]
        negatives = [d for d in candidates if judged.get(d, 0) < min_positive_grade]
        negatives = [d for d in negatives if d in corpus_texts][:negatives_per_query]
        if not negatives:
            continue
        teacher_scores = teacher.get(qid, {}) if teacher else {}
        floor = min(teacher_scores.values(), default=0.0)
        for pos in positives:
            examples.append(
                Example(
                    query=text,
                    positive=corpus_texts[pos],
                    negatives=[corpus_texts[d] for d in negatives],
                    teacher_positive=teacher_scores.get(pos, floor) if teacher else None,
                    teacher_negatives=[teacher_scores.get(d, floor) for d in negatives]
                    if teacher
                    else [],
                    query_id=qid,
                )
            )
    return examples


def load_qrels_examples(
    queries_path: Path,
    qrels_path: Path,
    corpus_path: Path,
    negatives_run_path: Path | None,
    *,
    negatives_index: Path | None = None,
    split: str | None = None,
    negatives_per_query: int = 16,
    negative_depth: int = 50,
    min_positive_grade: int = 1,
    teacher_path: Path | None = None,
    query_ids: Iterable[str] | None = None,
) -> list[Example]:
    """Read files and build :func:`examples_from_qrels` examples.

    Negatives come from a run file, or are mined from ``negatives_index`` (a Loupe index
    folder: its dual encoder retrieves each query's top ``negative_depth``).
    """
    queries = read_queries(queries_path, split)
    if query_ids is not None:
        keep = set(query_ids)
        queries = {q: t for q, t in queries.items() if q in keep}
    qrels = read_qrels(qrels_path)
    if negatives_run_path is not None:
        run = read_run(negatives_run_path)
    elif negatives_index is not None:
        from index.searcher import Searcher
        from training.mining import mine_hard_negatives

        searcher = Searcher.open(negatives_index)
        try:
            run = mine_hard_negatives(searcher, queries, qrels, depth=negative_depth)
        finally:
            searcher.reader.close()
    else:
        raise ValueError("give negatives_run or negatives_index")
    needed = {d for q in queries for d in qrels.get(q, {})}
    needed |= {d for q in queries for d, _ in ranked(run.get(q, {}), negative_depth)}
    texts = {doc.id: doc.full_text for doc in read_corpus(corpus_path) if doc.id in needed}
    teacher = read_run(teacher_path) if teacher_path else None
    return examples_from_qrels(
        queries,
        qrels,
        texts,
        run,
        negatives_per_query=negatives_per_query,
        negative_depth=negative_depth,
        min_positive_grade=min_positive_grade,
        teacher=teacher,
    )


def split_by_query(
    examples: Sequence[Example], dev_fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Hold out whole queries (never the same query on both sides)."""
    keys = sorted({e.query_id or e.query for e in examples})
    rng = random.Random(seed)
    rng.shuffle(keys)
    dev_keys = set(keys[: round(len(keys) * dev_fraction)])
    train = [e for e in examples if (e.query_id or e.query) not in dev_keys]
    dev = [e for e in examples if (e.query_id or e.query) in dev_keys]
    return train, dev
