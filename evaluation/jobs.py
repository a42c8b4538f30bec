"""``loupe eval``: score a run, re-rank a candidate run, or retrieve from an index (without
judgments: write the run alone, for queries whose judgments are elsewhere)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from evaluation.calibration import CalibrationQuality, reranked_run_quality
from evaluation.compare import Comparison, compare, plot_differences
from evaluation.metrics import MetricsResult, evaluate, format_table
from evaluation.report import write_report
from index.qdrant_index import QdrantTarget
from index.readers.corpus import read_corpus
from index.readers.queries import read_queries
from index.readers.trec import Run, ranked, read_qrels, read_run, write_run
from index.searcher import Hit, IndexReader, Searcher
from index.vector_index import ApproximateSearch
from models.registry import reranker_encoders
from models.reranker import Reranker
from models.runtime import RuntimeChoice, RuntimeConfig, RuntimeName, apply_runtimes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    """What ``loupe eval`` does: score ``run``; re-rank ``candidates`` (their texts from
    ``corpus``, or from ``index``, which also gives its stored token matrices); or retrieve
    from ``index``. Without ``qrels``, every query is ranked and the run written, with no
    metrics."""

    queries: Path
    out: Path
    qrels: Path | None = None
    run: Path | None = None
    candidates: Path | None = None
    corpus: Path | None = None
    index: Path | None = None
    reranker: str | None = None
    depth: int = 100
    rerank_depth: int = 100
    first_stage: str = "dense"
    query_split: str | None = None
    measures: tuple[str, ...] | None = None
    compare: Path | None = None
    name: str | None = None
    device: str | None = None
    runtime: RuntimeName = "torch"
    """Where the encoders run (``models.runtime``): auto, torch or onnx."""
    show_progress: bool = True
    qdrant: QdrantTarget | None = None
    """Where the index's Qdrant collection is, if not where its manifest says."""
    approximate: ApproximateSearch = field(default_factory=ApproximateSearch)
    """How far an approximate index searches, where not as its file says."""

    def validate(self) -> None:
        modes = [x for x in (self.run, self.candidates, self.index) if x is not None]
        together = self.candidates is not None and self.index is not None
        if len(modes) != 1 and not (together and self.run is None):
            raise ValueError(
                "give exactly one of --run, --candidates (with --corpus or --index) and --index"
            )
        if self.candidates is not None and (self.corpus is None) == (self.index is None):
            raise ValueError(
                "--candidates needs the passages' texts: --corpus (encoded), or --index "
                "(scored from its token store where it has their matrices)"
            )
        if self.depth < 1 or self.rerank_depth < 1:
            raise ValueError("depths must be at least 1")
        if self.qrels is None:
            needing = [
                flag
                for flag, given in (
                    ("--run (scoring a run)", self.run),
                    ("--compare", self.compare),
                    ("--measure", self.measures),
                )
                if given
            ]
            if needing:
                raise ValueError(f"{', '.join(needing)} needs judgments: give --qrels")


@dataclass
class EvalResult:
    name: str
    metrics: MetricsResult | None
    """None without judgments."""
    run: Run
    timings: dict[str, float] = field(default_factory=dict)
    comparison: Comparison | None = None
    runtimes: list[RuntimeChoice] = field(default_factory=list)
    calibration: CalibrationQuality | None = None
    """How well the re-ranker's relevance_score (where calibrated) holds on these judgments."""


def run_eval(config: EvalConfig, reranker: Reranker | None = None) -> EvalResult:
    config.validate()
    queries = read_queries(config.queries, config.query_split)
    qrels = read_qrels(config.qrels) if config.qrels is not None else None
    evaluated = {q: t for q, t in queries.items() if qrels is None or q in qrels}
    if not evaluated:
        raise ValueError(f"no query of {config.queries} has judgments in {config.qrels}")
    timings: dict[str, float] = {}
    runtime = RuntimeConfig(config.runtime)
    runtimes = apply_runtimes(reranker_encoders(reranker), runtime) if reranker is not None else []
    if config.run is not None:
        run = read_run(config.run)
        name = config.name or config.run.stem
    elif config.candidates is not None:
        if reranker is None:
            raise ValueError("re-ranking candidates needs a re-ranker")
        candidates = read_run(config.candidates)
        if config.index is not None:
            run, timings = rerank_run_from_index(
                reranker,
                evaluated,
                candidates,
                config.index,
                config.rerank_depth,
                config.show_progress,
                config.qdrant,
            )
        else:
            assert config.corpus is not None
            run, timings = rerank_run(
                reranker,
                evaluated,
                candidates,
                config.corpus,
                config.rerank_depth,
                config.show_progress,
            )
        name = config.name or f"{config.candidates.stem}>>{reranker.name}"
    else:
        assert config.index is not None
        run, timings = retrieve_run(
            config.index,
            evaluated,
            config.depth,
            config.device,
            reranker,
            config.rerank_depth,
            config.show_progress,
            config.first_stage,
            runtime,
            runtimes,
            config.qdrant,
            config.approximate,
        )
        name = f"index:{config.index.name}:{config.first_stage}"
        if reranker is not None:
            name = f"{name}>>{reranker.name}"
        name = config.name or name
    if qrels is None:
        result = EvalResult(name=name, metrics=None, run=run, timings=timings, runtimes=runtimes)
        save_outputs(config, result)
        return result
    metrics = evaluate(qrels, run, config.measures, query_ids=evaluated)
    result = EvalResult(name=name, metrics=metrics, run=run, timings=timings, runtimes=runtimes)
    if reranker is not None and config.run is None:
        result.calibration = reranked_run_quality(reranker, evaluated, qrels, run)
    if config.compare is not None:
        baseline = evaluate(qrels, read_run(config.compare), list(metrics.aggregate), evaluated)
        result.comparison = compare(
            metrics,
            baseline,
            next(iter(metrics.aggregate)),
            system_name=name,
            baseline_name=config.compare.stem,
        )
    save_outputs(config, result)
    return result


def rerank_run(
    reranker: Reranker,
    queries: dict[str, str],
    candidates: Run,
    corpus: Path,
    depth: int,
    show_progress: bool,
) -> tuple[Run, dict[str, float]]:
    """Re-score each query's top-``depth`` candidates; returns the run and timings."""
    top = {q: [d for d, _ in ranked(candidates.get(q, {}), depth)] for q in queries}
    needed = {d for docs in top.values() for d in docs}
    texts = {d.id: d.full_text for d in read_corpus(corpus) if d.id in needed}
    missing = needed - texts.keys()
    if missing:
        example = next(iter(missing))
        raise ValueError(
            f"{len(missing)} candidate documents are not in the corpus, e.g. {example!r}"
        )
    run: Run = {}
    started = time.perf_counter()
    for qid in tqdm(list(queries), desc="re-ranking", unit="query", disable=not show_progress):
        docs = top[qid]
        scores = reranker.score(queries[qid], [texts[d] for d in docs]) if docs else np.zeros(0)
        run[qid] = {d: float(s) for d, s in zip(docs, scores, strict=True)}
    elapsed = time.perf_counter() - started
    return run, {
        "rerank_seconds": elapsed,
        "rerank_ms_per_query": 1000 * elapsed / max(len(queries), 1),
        "rerank_depth": float(depth),
    }


def rerank_run_from_index(
    reranker: Reranker,
    queries: dict[str, str],
    candidates: Run,
    index: Path,
    depth: int,
    show_progress: bool,
    qdrant: QdrantTarget | None = None,
) -> tuple[Run, dict[str, float]]:
    """:func:`rerank_run` with the candidates' texts, and their token matrices where the
    re-ranker stored them, from an index of their corpus: what the store holds is not
    encoded again."""
    top = {q: ranked(candidates.get(q, {}), depth) for q in queries}
    needed = sorted({d for docs in top.values() for d, _ in docs})
    reader = IndexReader.open(index, read_only=True, qdrant=qdrant)
    try:
        stored = reader.docstore.get_by_ids(needed)
        missing = [d for d in needed if d not in stored]
        if missing:
            raise ValueError(
                f"{len(missing)} candidate documents are not in the index {index}, "
                f"e.g. {missing[0]!r}"
            )
        hits = {
            qid: [Hit(stored[d].key, score, stored[d].document) for d, score in top[qid]]
            for qid in queries
        }
        return rerank_hits_run(reranker, reader, queries, hits, depth, show_progress)
    finally:
        reader.close()


def rerank_hits_run(
    reranker: Reranker,
    reader: IndexReader,
    queries: dict[str, str],
    hits: dict[str, list[Hit]],
    depth: int,
    show_progress: bool,
) -> tuple[Run, dict[str, float]]:
    """Each query's ``hits`` (its top ``depth`` already) re-scored, from the index's token
    store where it holds their matrices; the run and the re-ranking timings, with the share
    of hits the store served."""
    from index.rerank import rerank_hits_many, token_store_warning

    mismatch = token_store_warning(reranker, reader)
    if mismatch is not None:
        log.warning("index %s: %s", reader.folder, mismatch)
    run: Run = {}
    stored: list[float] = []
    started = time.perf_counter()
    for qid in tqdm(list(queries), desc="re-ranking", unit="query", disable=not show_progress):
        top = hits[qid]
        scores = rerank_hits_many(reranker, reader, [queries[qid]], [top], hit_rates=stored)[0]
        run[qid] = {h.document.id: float(s) for h, s in zip(top, scores, strict=True)}
    elapsed = time.perf_counter() - started
    return run, {
        "rerank_seconds": elapsed,
        "rerank_ms_per_query": 1000 * elapsed / max(len(queries), 1),
        "rerank_depth": float(depth),
        "token_store_hit_rate": sum(stored) / max(1, len(stored)),
    }


def config_record(config: EvalConfig) -> dict[str, object]:
    """The config as metrics.json records it: paths as strings, and of a Qdrant target its
    location alone (never its API key)."""
    record: dict[str, object] = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()
    }
    record["qdrant"] = config.qdrant.location if config.qdrant is not None else None
    return record


def retrieve_run(
    index: Path,
    queries: dict[str, str],
    depth: int,
    device: str | None,
    reranker: Reranker | None = None,
    rerank_depth: int = 100,
    show_progress: bool = False,
    first_stage: str = "dense",
    runtime: RuntimeConfig | None = None,
    runtimes: list[RuntimeChoice] | None = None,
    qdrant: QdrantTarget | None = None,
    approximate: ApproximateSearch | None = None,
) -> tuple[Run, dict[str, float]]:
    """First-stage retrieval, then (optionally) re-ranking of the top ``rerank_depth`` hits
    from the index's token store (documents are encoded only if the store lacks them).

    ``runtime``: where the query encoder runs (None: PyTorch); its choice is appended to
    ``runtimes``. ``qdrant``: where an index's Qdrant collection is (default: as its
    manifest says). ``approximate``: how far an approximate index searches.
    """
    searcher = Searcher.open(index, device=device, qdrant=qdrant, approximate=approximate)
    if runtime is not None:
        chosen = apply_runtimes([searcher.encoder], runtime)
        if runtimes is not None:
            runtimes += chosen
    try:
        ids = list(queries)
        started = time.perf_counter()
        hits = searcher.search([queries[q] for q in ids], depth, first_stage)
        elapsed = time.perf_counter() - started
        run = {q: {h.document.id: h.score for h in row} for q, row in zip(ids, hits, strict=True)}
        timings = {"retrieve_seconds": elapsed, "retrieve_ms_per_query": 1000 * elapsed / len(ids)}
        if reranker is None:
            return run, timings
        top = {qid: row[:rerank_depth] for qid, row in zip(ids, hits, strict=True)}
        reranked, rerank_timings = rerank_hits_run(
            reranker, searcher.reader, queries, top, rerank_depth, show_progress
        )
        run |= reranked
        timings |= rerank_timings
        return run, timings
    finally:
        searcher.reader.close()


def save_outputs(config: EvalConfig, result: EvalResult) -> None:
    out = config.out
    out.mkdir(parents=True, exist_ok=True)
    write_run(result.run, out / "run.trec", tag=_tag(result.name))
    plot = None
    if result.comparison is not None:
        plot = plot_differences(result.comparison, out / "per_query_differences.png")
    metrics = result.metrics
    payload = {
        "name": result.name,
        "num_queries": metrics.num_queries if metrics is not None else len(result.run),
        "metrics": metrics.aggregate if metrics is not None else None,
        "per_query": metrics.per_query if metrics is not None else None,
        "timings": result.timings,
        "runtimes": [choice.to_dict() for choice in result.runtimes],
        "config": config_record(config),
    }
    if result.comparison is not None:
        comparison = asdict(result.comparison)
        payload["comparison"] = comparison
    if result.calibration is not None:
        payload["calibration"] = asdict(result.calibration)
    (out / "metrics.json").write_text(json.dumps(payload, indent=2))
    write_report(out / "report.md", result, config, plot)


def summary_table(result: EvalResult) -> str:
    if result.metrics is None:
        ranked_queries = sum(1 for docs in result.run.values() if docs)
        return f"{result.name}: {ranked_queries} queries ranked; no judgments (--qrels) to score"
    return format_table({result.name: result.metrics.aggregate}, list(result.metrics.aggregate))


def _tag(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:60] or "loupe"
