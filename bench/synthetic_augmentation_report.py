"""nDCG@10 per seed and its mean for every arm in ``bench/synthetic_augmentation.py``'s
results files, as the Markdown table of reports/softsrv.md.

    python -m bench.synthetic_augmentation_report runs/msmarco-augmentation/results.json ...
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from statistics import mean

from bench.harness import markdown_table

SETS = {"dl19-bm25": "DL19", "scifact-test-dense": "SciFact"}


def arm_scores(files: list[Path], measure: str) -> dict[str, dict[str, dict[int, float]]]:
    """arm -> evaluation set -> seed -> score, from rows keyed ``"set | arm | seed N"``;
    a later file's row replaces an earlier one's."""
    arms: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for path in files:
        for key, metrics in json.loads(path.read_text())["metrics"].items():
            dataset, arm, seed = (part.strip() for part in key.split("|"))
            arms[arm][dataset][int(seed.removeprefix("seed "))] = float(metrics[measure])
    return arms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, nargs="+")
    parser.add_argument("--measure", default="nDCG@10")
    args = parser.parse_args()
    arms = arm_scores(args.results, args.measure)
    seeds = sorted({s for arm in arms.values() for d in arm.values() for s in d})
    headers = ["training data"]
    for label in SETS.values():
        headers += [f"{label} seed {s}" for s in seeds] + [f"{label} mean"]
    rows = []
    for arm, by_set in arms.items():
        row: list[object] = [arm]
        for dataset in SETS:
            scores = by_set.get(dataset, {})
            row += [scores.get(s) for s in seeds]
            row.append(round(mean(scores.values()), 4) if scores else None)
        rows.append(row)
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
