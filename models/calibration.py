"""Score calibration: a re-ranker's raw scores mapped to probabilities of relevance.

A late-interaction score (MaxSim times a temperature) orders documents but means nothing on
its own, while clients of Cohere's and Jina's rerank APIs threshold ``relevance_score`` in
[0, 1]. Platt scaling fits ``P(relevant | x) = sigmoid(slope * x + intercept)`` on judged
candidates the model did not train on. For MaxSim, ``x`` is the score per query token: a sum
over query tokens grows with the query's length, so the raw score of a 9-token web query and
of a 21-token scientific claim are not on one scale, while the per-token score is
(reports/lite.md: fitted on SciFact, it holds on DL19; the raw score does not). Within one
query the mapping is monotone, so it never changes a ranking. The fit lives beside a model
as ``calibration.json``; it is not part of the model's fingerprint, so refitting it leaves
token stores valid.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

CALIBRATION_NAME = "calibration.json"


def platt_probabilities(scores: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """``sigmoid(slope * scores + intercept)``, float64, without overflow for any score.

    >>> platt_probabilities(np.array([-1000.0, 0.0, 2.0]), 1.0, 0.0).round(4).tolist()
    [0.0, 0.5, 0.8808]
    """
    z = slope * np.asarray(scores, dtype=np.float64) + intercept
    return np.exp(-np.logaddexp(0.0, -z))


def fit_platt(scores: np.ndarray, labels: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """Slope and intercept of Platt scaling fitted to ``(n,)`` scores and 0/1 labels.

    Newton's method on the logistic loss, with Platt's smoothed targets
    ``(positives + 1) / (positives + 2)`` and ``1 / (negatives + 2)`` so that separable data
    still gives finite parameters. Scores are standardised while fitting.

    >>> s = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    >>> slope, intercept = fit_platt(s, np.array([0, 0, 1, 0, 1, 1]))
    >>> slope > 0, round(-intercept / slope, 1)  # P = 0.5 in the middle
    (True, 2.5)
    """
    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("scores and labels must be 1-d arrays of one length")
    positives = float(y.sum())
    negatives = float(len(y) - positives)
    if positives == 0 or negatives == 0:
        raise ValueError("calibration needs both relevant and non-relevant examples")
    target = np.where(y > 0, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    mean, std = float(x.mean()), float(x.std()) or 1.0
    features = np.stack([(x - mean) / std, np.ones_like(x)], axis=1)
    weights = np.array([1.0, math.log((positives + 1) / (negatives + 1))])
    for _ in range(iterations):
        p = platt_probabilities(features @ weights, 1.0, 0.0)
        gradient = features.T @ (p - target)
        hessian = features.T @ (features * (p * (1 - p))[:, None]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.abs(step).max() < 1e-10:
            break
    slope = weights[0] / std
    return float(slope), float(weights[1] - slope * mean)


@dataclass(frozen=True)
class ScoreCalibration:
    """Platt scaling of one model's scores, with a note of the judgments it was fitted on."""

    slope: float
    intercept: float
    per_query_token: bool = False
    """Whether the fit is on the score divided by the query's token count."""
    fitted_on: str = ""
    model_fingerprint: str = ""
    """The fingerprint of the model whose scores were fitted (empty: not recorded)."""

    def probabilities(self, scores: np.ndarray, query_tokens: int = 1) -> np.ndarray:
        """``(n,)`` raw scores of one query's documents -> ``(n,)`` probabilities of
        relevance, float32. ``query_tokens``: the query's token count (the tokens its score
        sums over), used when ``per_query_token``.

        >>> ScoreCalibration(2.0, -4.0).probabilities(np.array([2.0])).tolist()
        [0.5]
        >>> ScoreCalibration(2.0, -4.0, per_query_token=True).probabilities(
        ...     np.array([8.0]), query_tokens=4).tolist()
        [0.5]
        """
        if query_tokens < 1:
            raise ValueError(f"query_tokens must be at least 1, not {query_tokens}")
        x = np.asarray(scores, dtype=np.float64)
        if self.per_query_token:
            x = x / query_tokens
        return platt_probabilities(x, self.slope, self.intercept).astype(np.float32)

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / CALIBRATION_NAME
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> ScoreCalibration | None:
        """The calibration saved in a model folder, or None where it has none."""
        path = Path(folder) / CALIBRATION_NAME
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            calibration = cls(
                slope=float(data["slope"]),
                intercept=float(data["intercept"]),
                per_query_token=bool(data.get("per_query_token", False)),
                fitted_on=str(data.get("fitted_on", "")),
                model_fingerprint=str(data.get("model_fingerprint", "")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a score calibration ({exc})") from exc
        slope, intercept = calibration.slope, calibration.intercept
        if not (math.isfinite(slope) and slope > 0 and math.isfinite(intercept)):
            raise ValueError(f"{path}: needs a finite positive slope and a finite intercept")
        return calibration
