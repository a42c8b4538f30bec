"""Markdown report of one evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from evaluation.metrics import format_table

if TYPE_CHECKING:
    from evaluation.jobs import EvalConfig, EvalResult


def write_report(path: Path, result: EvalResult, config: EvalConfig, plot: Path | None) -> None:
    metrics = result.metrics
    evaluated = (
        f"{metrics.num_queries} judged queries evaluated"
        if metrics is not None
        else f"{sum(1 for docs in result.run.values() if docs)} queries ranked"
    )
    lines = [
        f"# Evaluation: {result.name}",
        "",
        f"- queries: `{config.queries}` ({evaluated})",
        f"- qrels: `{config.qrels}`" if config.qrels is not None else "- qrels: none (run only)",
    ]
    for label, value in (
        ("run", config.run),
        ("candidates", config.candidates),
        ("corpus", config.corpus),
        ("index", config.index),
        ("reranker", config.reranker),
    ):
        if value is not None:
            lines.append(f"- {label}: `{value}`")
    if metrics is not None:
        table = format_table({result.name: metrics.aggregate}, list(metrics.aggregate))
        lines += ["", table, ""]
    else:
        lines += ["", "No judgments were given: `run.trec` holds the ranking, unscored.", ""]
    if result.timings:
        lines.append("## Timings")
        lines += [f"- {k}: {v:.2f}" for k, v in result.timings.items()]
        lines.append("")
    quality = result.calibration
    if quality is not None:
        precision = (
            f"{quality.precision_above_half:.3f}"
            if quality.precision_above_half is not None
            else "-"
        )
        lines += [
            "## Calibration of relevance_score (grade >= 1; unjudged = not relevant)",
            "",
            f"- candidates: {quality.pairs}, relevant: {quality.prevalence:.3f}, "
            f"mean probability: {quality.mean_probability:.3f}",
            f"- Brier: {quality.brier:.4f} (base rate {quality.brier_of_prevalence:.4f}), "
            f"log loss: {quality.log_loss:.4f}, ECE: {quality.expected_calibration_error:.4f}",
            f"- kept at relevance_score > 0.5: precision {precision}, "
            f"recall {quality.recall_above_half:.3f}",
            "",
        ]
    comparison = result.comparison
    if comparison is not None:
        lines += [
            f"## Against {comparison.baseline} ({comparison.measure})",
            "",
            f"- mean difference: {comparison.mean_difference:+.4f}",
            f"- wins / losses / ties: {comparison.wins} / {comparison.losses} / {comparison.ties}",
            f"- paired t-test: t = {comparison.t_statistic:.3f}, p = {comparison.p_value:.4g}",
            f"- Wilcoxon signed-rank: p = {comparison.wilcoxon_p_value:.4g}",
            "",
        ]
        if plot is not None:
            lines += [f"![per-query differences]({plot.name})", ""]
    path.write_text("\n".join(lines))
