"""Metrics through ir_measures; knows no dataset.

Queries that have judgments but no ranked documents count as zero, so a run cannot look
better by leaving hard queries out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import ir_measures

from index.readers.trec import Qrels, Run

BASE_MEASURES = ("nDCG@10", "RR@10", "R@100")


@dataclass(frozen=True)
class MetricsResult:
    """Mean and per-query values, keyed by ir_measures' measure names."""

    aggregate: dict[str, float]
    per_query: dict[str, dict[str, float]]
    num_queries: int


def default_measures(qrels: Qrels, run: Run) -> list[str]:
    """nDCG@10, RR@10, R@100, plus R@1000 for deep runs and rel=2 variants for graded qrels."""
    measures = list(BASE_MEASURES)
    depth = max((len(docs) for docs in run.values()), default=0)
    if depth > 100:
        measures.append("R@1000")
    max_grade = max((g for docs in qrels.values() for g in docs.values()), default=1)
    if max_grade > 1:
        measures += ["RR(rel=2)@10", "R(rel=2)@100"]
        if depth > 100:
            measures.append("R(rel=2)@1000")
    return measures


def evaluate(
    qrels: Qrels,
    run: Run,
    measures: Sequence[str] | None = None,
    query_ids: Iterable[str] | None = None,
) -> MetricsResult:
    """Score ``run`` against ``qrels``.

    Args:
        query_ids: the queries to average over (default: every query with judgments);
            those without judgments are ignored, those without results score 0.

    >>> qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    >>> result = evaluate(qrels, {"q1": {"a": 2.0, "c": 1.0}}, ["RR@10"])
    >>> result.aggregate["RR@10"], result.per_query["q2"]["RR@10"]
    (0.5, 0.0)
    """
    names = list(measures or default_measures(qrels, run))
    parsed = {name: ir_measures.parse_measure(name) for name in names}
    by_measure = {str(m): name for name, m in parsed.items()}
    judged = set(qrels) if query_ids is None else set(query_ids) & set(qrels)
    if not judged:
        raise ValueError("no query has judgments: check that qrels and queries share ids")
    per_query = {qid: dict.fromkeys(names, 0.0) for qid in sorted(judged)}
    scoped_qrels = {q: dict(d) for q, d in qrels.items() if q in judged}
    scoped_run = {q: dict(d) for q, d in run.items() if q in judged and d}
    if scoped_run:
        for metric in ir_measures.iter_calc(list(parsed.values()), scoped_qrels, scoped_run):
            per_query[metric.query_id][by_measure[str(metric.measure)]] = float(metric.value)
    aggregate = {
        name: sum(values[name] for values in per_query.values()) / len(per_query) for name in names
    }
    return MetricsResult(aggregate=aggregate, per_query=per_query, num_queries=len(per_query))


def format_table(rows: Mapping[str, Mapping[str, float]], measures: Sequence[str]) -> str:
    """A Markdown table: one row per system, one column per measure.

    >>> print(format_table({"bm25": {"nDCG@10": 0.5058}}, ["nDCG@10"]))
    | system | nDCG@10 |
    |---|---|
    | bm25 | 0.5058 |
    """
    lines = ["| system | " + " | ".join(measures) + " |", "|---" * (len(measures) + 1) + "|"]
    for name, values in rows.items():
        cells = [f"{values[m]:.4f}" if m in values else "" for m in measures]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
