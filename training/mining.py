"""Hard-negative mining from a first-stage index, skipping known positives."""

from __future__ import annotations

from collections.abc import Mapping

from index.readers.trec import Qrels, Run
from index.searcher import Searcher


def mine_hard_negatives(
    searcher: Searcher,
    queries: Mapping[str, str],
    qrels: Qrels,
    depth: int = 50,
    batch_size: int = 64,
) -> Run:
    """Each query's top-``depth`` first-stage hits with judged positives removed, as a run."""
    run: Run = {}
    ids = list(queries)
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        hits = searcher.search([queries[q] for q in chunk], depth)
        for qid, row in zip(chunk, hits, strict=True):
            positives = {d for d, g in qrels.get(qid, {}).items() if g > 0}
            run[qid] = {h.document.id: h.score for h in row if h.document.id not in positives}
    return run
