"""bench/lm_teacher_distill.py: generated pairs become training examples whose positive is
the source passage, whose negatives are BM25's other pool passages (a query BM25 matches
to nothing else yields no example), and whose teacher scores are the teacher run's."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import bench.lm_teacher_distill
from bench.lm_teacher_distill import distillation_source, synthetic_set
from training.batches import load_examples
from training.synthetic_pairs import qrels_path, read_pairs, write_qrels

POOL = {
    "p-cherry": "Cherry trees are found throughout the world and bloom in spring.",
    "p-cherry2": "Cherry blossoms are pinkish white and fragrant in spring.",
    "p-kola": "The kola nut is the fruit of the kola tree, native to Africa.",
    "p-plum": "A plum is a fruit of the genus Prunus, close to the cherry.",
    "p-rust": "Rust is iron oxide, formed when iron meets water and oxygen.",
}


def write_inputs(tmp_path: Path) -> tuple[Path, Path]:
    pool = tmp_path / "pool.jsonl"
    pool.write_text(
        "".join(json.dumps({"_id": d, "title": "", "text": t}) + "\n" for d, t in POOL.items())
    )
    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {"query_id": "s1", "query": "when do cherry trees bloom", "doc_id": "p-cherry"},
        {"query_id": "s2", "query": "is kola a tree fruit", "doc_id": "p-kola", "kept": True},
        {"query_id": "s3", "query": "how does iron rust", "doc_id": "p-rust", "kept": False},
        {"query_id": "s4", "query": "what is iron oxide", "doc_id": "p-rust"},
    ]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_qrels(read_pairs(pairs), qrels_path(pairs))  # as loupe generate leaves it
    return pairs, pool


def test_source_passage_first_then_other_pool_passages(tmp_path: Path) -> None:
    pairs, pool = write_inputs(tmp_path)
    spec = synthetic_set(pairs, pool, negatives=2)
    assert set(spec.queries) == {"s1", "s2", "s4"}  # the filter's dropped row is skipped
    assert spec.top["s4"] == ["p-rust"]  # negatives are BM25 hits only: none share a term
    for qid, source in [("s1", "p-cherry"), ("s2", "p-kola")]:
        assert spec.top[qid][0] == source
        assert len(spec.top[qid]) == 3
        assert source not in spec.top[qid][1:]
        assert spec.qrels[qid] == {source: 1}
    assert set(spec.texts) == {d for row in spec.top.values() for d in row}


def test_the_source_loads_as_examples_with_teacher_scores(tmp_path: Path) -> None:
    pairs, pool = write_inputs(tmp_path)
    spec = synthetic_set(pairs, pool, negatives=2)
    teacher = {q: {d: float(10 - i) for i, d in enumerate(row)} for q, row in spec.top.items()}
    source = distillation_source(spec, teacher, pairs, pool, 2, tmp_path / "source")
    examples = {e.query_id: e for e in load_examples([source])}
    assert set(examples) == {"s1", "s2"}  # s4 has no negative, so no example
    cherry = examples["s1"]
    assert cherry.query == "when do cherry trees bloom"
    assert cherry.positive == POOL["p-cherry"]
    assert cherry.teacher_positive == 10.0
    by_text = {t: d for d, t in POOL.items()}
    negatives = [by_text[t] for t in cherry.negatives]
    assert negatives == spec.top["s1"][1:]
    assert cherry.teacher_negatives == [teacher["s1"][d] for d in negatives]


def test_the_docstring_examples_hold() -> None:
    assert doctest.testmod(bench.lm_teacher_distill).failed == 0
