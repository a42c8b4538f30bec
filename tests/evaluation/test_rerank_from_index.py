"""``loupe eval --candidates RUN --index DIR``: a candidate run re-ranked with the texts and
stored token matrices of an index of its corpus, as with ``--corpus`` but not encoded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from evaluation.jobs import EvalConfig, run_eval
from index.builder import IndexBuildConfig, build_index


def test_candidates_scored_from_the_index_as_from_the_corpus(
    tmp_path: Path, tiny_corpus: Path, tiny_encoder: Any, tiny_model_dir: Path
) -> None:
    from models.registry import load_reranker

    spec = f"maxsim:{tiny_model_dir}"
    index = tmp_path / "index"
    build = IndexBuildConfig(
        corpus=tiny_corpus, out=index, show_progress=False, token_store=True, reranker=spec
    )
    build_index(build, encoder=tiny_encoder)
    queries = tmp_path / "queries.tsv"
    queries.write_text("q1\tloyal dogs\nq2\tlight into energy\n")
    qrels = tmp_path / "qrels.trec"
    qrels.write_text("q1 0 d3 1\nq2 0 d4 1\n")
    candidates = tmp_path / "candidates.trec"
    candidates.write_text(
        "".join(f"{q} Q0 d{i} {i} {5 - i} bm25\n" for q in ("q1", "q2") for i in range(1, 5))
    )
    reranker = load_reranker(spec, device="cpu")

    def evaluated(**given: Any) -> Any:
        config = EvalConfig(
            queries=queries,
            qrels=qrels,
            candidates=candidates,
            out=tmp_path / next(iter(given)),
            show_progress=False,
            **given,
        )
        return run_eval(config, reranker)

    encoded, stored = evaluated(corpus=tiny_corpus), evaluated(index=index)
    assert stored.timings["token_store_hit_rate"] == 1.0
    for qid, scores in encoded.run.items():
        assert set(stored.run[qid]) == set(scores)
        for doc_id, score in scores.items():
            assert stored.run[qid][doc_id] == pytest.approx(score, abs=0.02)  # int8 store
    assert stored.metrics is not None and encoded.metrics is not None
    assert stored.metrics.aggregate == pytest.approx(encoded.metrics.aggregate)
    record = json.loads((tmp_path / "index" / "metrics.json").read_text())
    assert record["timings"]["token_store_hit_rate"] == 1.0

    candidates.write_text("q1 Q0 nowhere 1 9 bm25\n")
    with pytest.raises(ValueError, match="1 candidate documents are not in the index"):
        evaluated(index=index)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"candidates": "c"}, "needs the passages' texts"),
        ({"candidates": "c", "corpus": "x", "index": "i"}, "needs the passages' texts"),
        ({"run": "r", "index": "i"}, "exactly one of"),
        ({}, "exactly one of"),
    ],
)
def test_what_a_candidate_run_needs(given: dict[str, str], message: str) -> None:
    paths = {k: Path(v) for k, v in given.items()}
    with pytest.raises(ValueError, match=message):
        EvalConfig(queries=Path("q"), out=Path("o"), **paths).validate()  # type: ignore[arg-type]
