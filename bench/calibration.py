"""Are the shipped re-ranker's calibrated scores probabilities of relevance? (reports/lite.md)

Platt scaling (``loupe calibrate``) is fitted on the SciFact-train queries the default
re-ranker held out for model selection (never trained on), re-ranking their dense top 100:
on the score per query token (what ships) and, for contrast, on the raw score. Each fit is
then judged where it was not fitted: SciFact test (dense top 100, 300 queries) and
TREC DL19 (BM25 top 100, 43 queries, graded: relevant = grade >= 1, and >= 2), on all
candidates (unjudged = not relevant) and, for DL19, on the judged ones only. Reported per
set: the rate of relevance, the mean probability, Brier score against the base-rate
predictor, log loss, ECE (10 bins), and what a client keeping ``relevance_score > 0.5`` gets
(precision, recall), over the top 100 and the top 10, plus reliability tables.

Inputs are runs the product wrote (scores included)::

    loupe index build --corpus $D/beir-scifact --out runs/scifact-index-lite --token-store
    loupe eval --index runs/scifact-index-lite --queries $D/beir-scifact/queries.jsonl \\
        --split train --qrels $D/beir-scifact/qrels/train.tsv --depth 50 \\
        --out runs/scifact-train-dense50                       # first stage: defines dev
    loupe eval --index runs/scifact-index-lite --queries $D/beir-scifact/queries.jsonl \\
        --split train --qrels $D/beir-scifact/qrels/train.tsv --reranker default \\
        --out runs/calibration/scifact-train                   # fit
    loupe eval ... --split test ... --reranker default --out runs/calibration/scifact-test
    loupe eval --queries $D/trec-dl-2019-passage/queries.tsv \\
        --qrels $D/trec-dl-2019-passage/qrels.trec --corpus $D/trec-dl-2019-passage/corpus.jsonl \\
        --candidates $D/trec-dl-2019-passage/run.BM25.top100.trec --reranker default \\
        --out runs/calibration/dl19
    python bench/calibration.py --out runs/calibration    # writes runs/calibration/dev-ids.txt
    loupe calibrate default --run runs/calibration/scifact-train/run.trec \\
        --qrels $D/beir-scifact/qrels/train.tsv --queries $D/beir-scifact/queries.jsonl \\
        --split train --query-ids runs/calibration/dev-ids.txt   # the shipped calibration.json

``--reranker maxsim`` does the same for untrained MaxSim, reading OUT/maxsim-scifact-train
(the dev queries' candidates re-ranked with ``--reranker maxsim``), OUT/maxsim-scifact-test
and OUT/maxsim-dl19; the commands are in reports/lite.md.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import numpy as np

from bench.harness import write_json
from bench.lite_experiment import scifact_dev_set
from evaluation.calibration import (
    CalibrationQuality,
    calibration_quality,
    fit_calibration,
    labelled_scores,
)
from evaluation.datasets import data_root
from index.readers import read_qrels, read_queries, read_run
from index.readers.triples import read_triples
from models.calibration import ScoreCalibration, platt_probabilities
from models.late_interaction import LateInteractionModel
from models.late_reranker import LateInteractionReranker
from models.registry import calibration_folder, load_late_interaction


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> list[dict]:
    """Per non-empty equal-width bin: its range, count, mean probability, observed rate."""
    which = np.minimum((probabilities * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        if inside.any():
            rows.append(
                {
                    "bin": f"{b / bins:.1f}-{(b + 1) / bins:.1f}",
                    "count": int(inside.sum()),
                    "mean_probability": float(probabilities[inside].mean()),
                    "relevant_rate": float(labels[inside].mean()),
                }
            )
    return rows


def row(name: str, quality: CalibrationQuality) -> str:
    """One markdown row (without its leading column) of a set's calibration quality."""
    precision = (
        f"{quality.precision_above_half:.3f}" if quality.precision_above_half is not None else "-"
    )
    return (
        f"{name} | {quality.pairs} | {quality.prevalence:.3f} | {quality.mean_probability:.3f} "
        f"| {quality.brier:.4f} | {quality.brier_of_prevalence:.4f} | {quality.log_loss:.4f} "
        f"| {quality.expected_calibration_error:.4f} | {precision} "
        f"| {quality.recall_above_half:.3f} |"
    )


def token_counts(model: LateInteractionModel, queries: dict[str, str]) -> dict[str, int]:
    return dict(zip(queries, model.query_token_counts(list(queries.values())), strict=True))


def triples_quality(
    model: LateInteractionModel, calibration: ScoreCalibration, data: Path
) -> CalibrationQuality:
    """The fit on the 100 MS MARCO training triples, web queries held out for ``maxsim``
    (the default trained on them): each positive and negative scored by the re-ranker."""
    reranker = LateInteractionReranker(model, calibration=calibration)
    probabilities: list[float] = []
    path = data / "msmarco-train-triples-sample" / "triples.train.sample100.tsv"
    for triple in read_triples(path):
        scores = reranker.score(triple.query, [triple.positive, triple.negative])
        relevance = reranker.relevance_scores(triple.query, scores)
        assert relevance is not None
        probabilities += [float(p) for p in relevance]
    labels = np.tile([1, 0], len(probabilities) // 2)
    return calibration_quality(np.array(probabilities), labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/calibration"))
    parser.add_argument(
        "--negatives-run", type=Path, default=Path("runs/scifact-train-dense50/run.trec")
    )
    parser.add_argument(
        "--reranker",
        default="default",
        help="'default' (runs in OUT/scifact-train, ...) or 'maxsim' (OUT/maxsim-...)",
    )
    args = parser.parse_args()
    prefix = "" if args.reranker == "default" else f"{args.reranker}-"
    data = data_root()
    sci, dl19 = data / "beir-scifact", data / "trec-dl-2019-passage"
    model = load_late_interaction(args.reranker, device="cpu")
    tokens = {
        "scifact-train": token_counts(model, read_queries(sci / "queries.jsonl", "train")),
        "scifact-test": token_counts(model, read_queries(sci / "queries.jsonl", "test")),
        "dl19": token_counts(model, read_queries(dl19 / "queries.tsv")),
    }

    dev_ids = sorted(scifact_dev_set(data, args.negatives_run).queries)
    ids_file = args.out / "dev-ids.txt"
    ids_file.write_text("\n".join(dev_ids) + "\n")
    fit_run = args.out / f"{prefix}scifact-train" / "run.trec"
    train_qrels = sci / "qrels" / "train.tsv"
    fits: dict[str, tuple[ScoreCalibration, CalibrationQuality]] = {
        "per query token": fit_calibration(
            fit_run, train_qrels, query_ids=set(dev_ids), query_tokens=tokens["scifact-train"]
        ),
        "raw score": fit_calibration(fit_run, train_qrels, query_ids=set(dev_ids)),
    }
    fits["per query token"][0].save(args.out / f"{prefix}fit")

    sets: dict[str, tuple[str, Path, int, bool]] = {
        "SciFact test": ("scifact-test", sci / "qrels" / "test.tsv", 1, False),
        "DL19, grade >= 1": ("dl19", dl19 / "qrels.trec", 1, False),
        "DL19 judged only, grade >= 1": ("dl19", dl19 / "qrels.trec", 1, True),
        "DL19, grade >= 2": ("dl19", dl19 / "qrels.trec", 2, False),
    }
    header = (
        "| calibration | candidates | pairs | relevant | mean P | Brier | Brier (base rate) "
        "| log loss | ECE | precision P>0.5 | recall P>0.5 |"
    )
    print(header)
    print("|---" * 11 + "|")
    results: dict[str, dict] = {}
    tables: dict[str, list[dict]] = {}
    for fit_name, (calibration, fitted) in fits.items():
        print(f"| {fit_name} | {row('SciFact train dev (fitted on)', fitted)}")
        results[fit_name] = {
            "calibration": asdict(calibration),
            "SciFact train dev (fitted on)": asdict(fitted),
        }
        divide = calibration.per_query_token
        for name, (folder, qrels_path, grade, judged_only) in sets.items():
            run_path = args.out / f"{prefix}{folder}" / "run.trec"
            if not run_path.is_file():
                print(f"| {fit_name} | {name}: no run at {run_path} |")
                continue
            run, qrels = read_run(run_path), read_qrels(qrels_path)
            for depth in (100, 10):
                x, labels = labelled_scores(
                    run,
                    qrels,
                    min_grade=grade,
                    depth=depth,
                    judged_only=judged_only,
                    query_tokens=tokens[folder] if divide else None,
                )
                p = platt_probabilities(x, calibration.slope, calibration.intercept)
                quality = calibration_quality(p, labels)
                label = f"{name}, top {depth}"
                print(f"| {fit_name} | {row(label, quality)}")
                results[fit_name][label] = asdict(quality)
                if depth == 100 and not judged_only:
                    tables[f"{fit_name} | {name}"] = reliability(p, labels)
    triples = triples_quality(model, fits["per query token"][0], data)
    print(f"| per query token | {row('MS MARCO triples (1 positive, 1 negative)', triples)}")
    results["per query token"]["MS MARCO triples"] = asdict(triples)
    for name, table in tables.items():
        print(f"\nreliability, {name}:")
        for entry in table:
            print(entry)
    write_json(
        args.out / "results.json",
        {"dev_queries": len(dev_ids), "fits": results, "reliability": tables},
    )
    shipped = ScoreCalibration.load(calibration_folder(args.reranker))
    if shipped is not None:
        same = (shipped.slope, shipped.intercept) == (
            fits["per query token"][0].slope,
            fits["per query token"][0].intercept,
        )
        print(f"\nshipped: {shipped}; the same slope and intercept as this fit: {same}")


if __name__ == "__main__":
    main()
