"""Fitting and judging score calibration on a scored run and its judgments."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index.readers.trec import Qrels, Run, ranked, read_qrels, read_run
from models.calibration import ScoreCalibration, fit_platt, platt_probabilities
from models.reranker import Reranker


def labelled_scores(
    run: Run,
    qrels: Qrels,
    *,
    min_grade: int = 1,
    depth: int | None = 100,
    query_ids: Collection[str] | None = None,
    judged_only: bool = False,
    query_tokens: Mapping[str, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores ``(n,)`` and 0/1 labels ``(n,)`` of each judged query's top ``depth``
    candidates (None: all): 1 where the grade is at least ``min_grade``. Unjudged
    candidates count as not relevant unless ``judged_only`` drops them. With
    ``query_tokens`` (query id -> token count), each score is divided by its query's count.

    >>> run = {"q": {"a": 3.0, "b": 2.0, "c": 1.0}, "other": {"x": 1.0}}
    >>> s, y = labelled_scores(run, {"q": {"a": 2, "b": 0}}, depth=2)
    >>> s.tolist(), y.tolist()
    ([3.0, 2.0], [1, 0])
    >>> labelled_scores(run, {"q": {"a": 2}}, depth=1, query_tokens={"q": 2})[0].tolist()
    [1.5]
    """
    scores: list[float] = []
    labels: list[int] = []
    for qid, candidates in run.items():
        judged = qrels.get(qid)
        if not judged or (query_ids is not None and qid not in query_ids):
            continue
        divisor = 1 if query_tokens is None else query_tokens[qid]
        for doc_id, score in ranked(candidates, depth):
            if judged_only and doc_id not in judged:
                continue
            scores.append(score / divisor)
            labels.append(int(judged.get(doc_id, 0) >= min_grade))
    return np.array(scores, dtype=np.float64), np.array(labels, dtype=np.int64)


@dataclass(frozen=True)
class CalibrationQuality:
    """How well probabilities match outcomes on one set of labelled candidates."""

    pairs: int
    prevalence: float
    mean_probability: float
    brier: float
    brier_of_prevalence: float
    log_loss: float
    expected_calibration_error: float
    precision_above_half: float | None
    recall_above_half: float


def calibration_quality(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 10
) -> CalibrationQuality:
    """Brier score, log loss and ECE (``bins`` equal-width bins) of ``(n,)`` probabilities.

    ``brier_of_prevalence`` is the Brier score of always answering the set's own rate of
    relevance, which a useful calibration beats. ``*_above_half``: the documents a client
    keeps with the threshold ``relevance_score > 0.5``.

    >>> q = calibration_quality(np.array([0.9, 0.9, 0.1, 0.1]), np.array([1, 1, 0, 0]))
    >>> round(q.brier, 3), round(q.expected_calibration_error, 3), q.precision_above_half
    (0.01, 0.1, 1.0)
    """
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1 - 1e-12)
    y = np.asarray(labels, dtype=np.float64)
    if len(p) == 0 or p.shape != y.shape:
        raise ValueError("need probabilities and labels of one non-zero length")
    prevalence = float(y.mean())
    which = np.minimum((p * bins).astype(int), bins - 1)
    ece = sum(
        abs(float(p[which == b].mean()) - float(y[which == b].mean())) * (which == b).mean()
        for b in range(bins)
        if (which == b).any()
    )
    kept = p > 0.5
    return CalibrationQuality(
        pairs=len(p),
        prevalence=prevalence,
        mean_probability=float(p.mean()),
        brier=float(np.mean((p - y) ** 2)),
        brier_of_prevalence=prevalence * (1 - prevalence),
        log_loss=float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
        expected_calibration_error=float(ece),
        precision_above_half=float(y[kept].mean()) if kept.any() else None,
        recall_above_half=float(y[kept].sum() / y.sum()) if y.sum() else 0.0,
    )


def fit_calibration(
    run_path: Path,
    qrels_path: Path,
    *,
    min_grade: int = 1,
    depth: int = 100,
    query_ids: Collection[str] | None = None,
    query_tokens: Mapping[str, int] | None = None,
) -> tuple[ScoreCalibration, CalibrationQuality]:
    """Platt scaling fitted to a re-ranked run's scores against its judgments, and its
    quality on those same candidates. With ``query_tokens`` (each query's token count, as
    the re-ranker counts them) it is fitted per query token (``per_query_token``)."""
    run, qrels = read_run(run_path), read_qrels(qrels_path)
    used = [q for q in run if q in qrels and (query_ids is None or q in query_ids)]
    if query_tokens is not None:
        missing = [q for q in used if q not in query_tokens]
        if missing:
            raise ValueError(
                f"{run_path}: no query text for {len(missing)} judged queries, e.g. {missing[0]}"
            )
    scores, labels = labelled_scores(
        run,
        qrels,
        min_grade=min_grade,
        depth=depth,
        query_ids=query_ids,
        query_tokens=query_tokens,
    )
    if len(scores) == 0:
        raise ValueError(f"{run_path}: no candidates of judged queries to calibrate on")
    slope, intercept = fit_platt(scores, labels)
    if slope <= 0:
        raise ValueError(
            f"{run_path}: higher scores are not more often relevant here (slope {slope:.3g}); "
            "is this the run the model re-ranked?"
        )
    note = (
        f"{run_path.parent.name}/{run_path.name} against {qrels_path.parent.name}/"
        f"{qrels_path.name}: top {depth} of {len(used)} queries, "
        f"{len(scores)} candidates, relevant = grade >= {min_grade}"
    )
    calibration = ScoreCalibration(
        slope=slope,
        intercept=intercept,
        per_query_token=query_tokens is not None,
        fitted_on=note,
    )
    quality = calibration_quality(platt_probabilities(scores, slope, intercept), labels)
    return calibration, quality


def reranked_run_quality(
    reranker: Reranker,
    queries: Mapping[str, str],
    qrels: Qrels,
    run: Run,
    *,
    min_grade: int = 1,
) -> CalibrationQuality | None:
    """How well a calibrated re-ranker's probabilities hold on a run it scored: every
    candidate of every judged query, unjudged ones as not relevant. None without a
    calibration."""
    if reranker.calibration is None:
        return None
    relevance_run: Run = {}
    for qid, candidates in run.items():
        if qid not in qrels or not candidates:
            continue
        docs = list(candidates)
        scores = np.array([candidates[d] for d in docs], dtype=np.float32)
        relevance = reranker.relevance_scores(queries[qid], scores)
        if relevance is None:
            return None
        relevance_run[qid] = {d: float(p) for d, p in zip(docs, relevance, strict=True)}
    probabilities, labels = labelled_scores(relevance_run, qrels, min_grade=min_grade, depth=None)
    return calibration_quality(probabilities, labels) if len(labels) else None
