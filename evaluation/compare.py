"""Comparing two runs query by query: wins, losses, a paired test and a plot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from evaluation.metrics import MetricsResult


@dataclass(frozen=True)
class Comparison:
    measure: str
    system: str
    baseline: str
    mean_difference: float
    wins: int
    losses: int
    ties: int
    t_statistic: float
    p_value: float
    wilcoxon_p_value: float
    differences: dict[str, float]


def compare(
    system: MetricsResult,
    baseline: MetricsResult,
    measure: str,
    *,
    system_name: str = "system",
    baseline_name: str = "baseline",
    tie_tolerance: float = 1e-9,
) -> Comparison:
    """Per-query differences ``system - baseline`` on ``measure``, with paired t and Wilcoxon
    signed-rank tests over the queries both were scored on.

    >>> a = MetricsResult({"m": 0.5}, {"q1": {"m": 1.0}, "q2": {"m": 0.0}, "q3": {"m": 0.5}}, 3)
    >>> b = MetricsResult({"m": 0.3}, {"q1": {"m": 0.5}, "q2": {"m": 0.0}, "q3": {"m": 0.4}}, 3)
    >>> c = compare(a, b, "m")
    >>> c.wins, c.losses, c.ties
    (2, 0, 1)
    """
    shared = sorted(set(system.per_query) & set(baseline.per_query))
    if not shared:
        raise ValueError("the two runs share no evaluated query")
    diffs = {q: system.per_query[q][measure] - baseline.per_query[q][measure] for q in shared}
    values = np.array(list(diffs.values()))
    wins = int((values > tie_tolerance).sum())
    losses = int((values < -tie_tolerance).sum())
    if np.allclose(values, 0):
        t_stat, p_value, w_p = 0.0, 1.0, 1.0
    else:
        sys_vals = np.array([system.per_query[q][measure] for q in shared])
        base_vals = np.array([baseline.per_query[q][measure] for q in shared])
        t_result = stats.ttest_rel(sys_vals, base_vals)
        t_stat, p_value = float(t_result.statistic), float(t_result.pvalue)
        w_p = float(stats.wilcoxon(values[np.abs(values) > tie_tolerance]).pvalue)
    return Comparison(
        measure=measure,
        system=system_name,
        baseline=baseline_name,
        mean_difference=float(values.mean()),
        wins=wins,
        losses=losses,
        ties=len(values) - wins - losses,
        t_statistic=t_stat,
        p_value=p_value,
        wilcoxon_p_value=w_p,
        differences=diffs,
    )


def plot_differences(comparison: Comparison, path: Path) -> Path:
    """Bar chart of per-query differences, sorted, wins green and losses red (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = sorted(comparison.differences.items(), key=lambda kv: kv[1], reverse=True)
    values = [v for _, v in items]
    colors = ["#2a9d4b" if v > 0 else "#c0392b" if v < 0 else "#999999" for v in values]
    fig, ax = plt.subplots(figsize=(max(6.0, len(values) * 0.06), 3.6), dpi=120)
    ax.bar(range(len(values)), values, color=colors, width=1.0)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set_xticks([])
    ax.set_xlabel(f"queries, sorted by difference (n={len(values)})")
    ax.set_ylabel(f"Δ {comparison.measure}")
    ax.set_title(
        f"{comparison.system} vs {comparison.baseline}: {comparison.wins} wins, "
        f"{comparison.losses} losses, {comparison.ties} ties; "
        f"mean Δ {comparison.mean_difference:+.4f}, p={comparison.p_value:.3g}",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
