"""A registry of the benchmarks in the shared data folder, so jobs can name them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_ENV = "LOUPE_DATA_DIR"


def data_root() -> Path:
    """``$LOUPE_DATA_DIR``, else ``../shared/data`` beside the checkout."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    return Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class Benchmark:
    """Files of one evaluation set, relative to the data root."""

    name: str
    queries: str
    qrels: str
    corpus: str
    candidates: str | None = None
    query_split: str | None = None

    def path(self, relative: str, root: Path | None = None) -> Path:
        return (root or data_root()) / relative

    def available(self, root: Path | None = None) -> bool:
        files = [self.queries, self.qrels, self.corpus] + (
            [self.candidates] if self.candidates else []
        )
        return all(self.path(f, root).exists() for f in files)


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark(
            "dl19-bm25",
            queries="trec-dl-2019-passage/queries.tsv",
            qrels="trec-dl-2019-passage/qrels.trec",
            corpus="trec-dl-2019-passage/corpus.jsonl",
            candidates="trec-dl-2019-passage/run.BM25.top100.trec",
        ),
        Benchmark(
            "scifact-test",
            queries="beir-scifact/queries.jsonl",
            qrels="beir-scifact/qrels/test.tsv",
            corpus="beir-scifact",
            query_split="test",
        ),
        Benchmark(
            "scifact-train",
            queries="beir-scifact/queries.jsonl",
            qrels="beir-scifact/qrels/train.tsv",
            corpus="beir-scifact",
            query_split="train",
        ),
    ]
}
