"""The table of reports/laurel.md for the MiniLM fine-tuning arms, from the folders
``bench/laurel_minilm.sh`` wrote: nDCG@10 and R@100 on SciFact test and DL19 of each arm,
its difference from the untrained MiniLM and from plain fine-tuning, with paired t-tests.

    python -m bench.laurel_minilm_report [--runs runs]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness import markdown_table
from evaluation.compare import compare
from evaluation.metrics import MetricsResult

ARMS = {
    "minilm": "MiniLM, not fine-tuned",
    "dual-scifact": "fine-tuned",
    "dual-scifact-laurel": "fine-tuned + LAuReL RW+LR",
    "dual-scifact-laurel-only": "frozen MiniLM + LAuReL RW+LR only",
}
TASKS = {"scifact": "SciFact test", "dl19": "DL19 (BM25 top-100 re-ranked)"}


def load(path: Path) -> MetricsResult:
    data = json.loads(path.read_text())
    return MetricsResult(data["metrics"], data["per_query"], data["num_queries"])


def _difference(system: MetricsResult, baseline: MetricsResult, measure: str) -> str:
    c = compare(system, baseline, measure)
    return f"{c.mean_difference:+.4f} (p={c.p_value:.2g})"


def rows(runs: Path) -> list[list[Any]]:
    table = []
    for task, label in TASKS.items():
        results = {
            arm: load(runs / f"{arm}-eval-{task}" / "metrics.json")
            for arm in ARMS
            if (runs / f"{arm}-eval-{task}" / "metrics.json").is_file()
        }
        base, plain = results.get("minilm"), results.get("dual-scifact")
        for arm, result in results.items():
            summary = runs / arm / "summary.json"
            trained = json.loads(summary.read_text()) if summary.is_file() else {}
            table.append(
                [
                    label,
                    ARMS[arm],
                    f"{result.aggregate['nDCG@10']:.4f}",
                    f"{result.aggregate['R@100']:.4f}",
                    _difference(result, base, "nDCG@10") if base and arm != "minilm" else "",
                    _difference(result, plain, "nDCG@10")
                    if plain and arm.startswith("dual-scifact-")
                    else "",
                    trained.get("best_step", ""),
                ]
            )
    return table


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    args = parser.parse_args(argv)
    text = markdown_table(
        [
            "evaluation",
            "encoder",
            "nDCG@10",
            "R@100",
            "nDCG@10 vs MiniLM",
            "vs plain fine-tuning",
            "best step",
        ],
        rows(args.runs),
    )
    print(text)
    return text


if __name__ == "__main__":
    main()
