"""``loupe calibrate``: fit a re-ranker's probabilities of relevance to judged candidates.

The command only parses options and calls :func:`evaluation.calibration.fit_calibration`
on a run that the model re-ranked (``loupe eval --reranker MODEL --out DIR`` writes one),
then saves the result as ``calibration.json`` in the model folder. Every option also reads
``LOUPE_<OPTION>``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from loupe.cli_common import QrelsFile, QueriesFile, QuerySplit, env, user_errors

if TYPE_CHECKING:
    from evaluation.calibration import CalibrationQuality
    from models.calibration import ScoreCalibration


def read_query_ids(path: Path) -> set[str]:
    """One query id per line; blank lines are skipped."""
    ids = {line.strip() for line in path.read_text().splitlines() if line.strip()}
    if not ids:
        raise ValueError(f"{path}: no query ids")
    return ids


def calibrate(
    model: Annotated[
        str,
        typer.Argument(
            help="'default', 'maxsim', or a late-interaction or cross-encoder model folder "
            "to write into"
        ),
    ],
    run: Annotated[
        Path,
        typer.Option(help="TREC run the model re-ranked (its scores)", envvar=env("run")),
    ],
    qrels: QrelsFile,
    queries: QueriesFile,
    split: QuerySplit = None,
    min_grade: Annotated[
        int, typer.Option(help="lowest grade that counts as relevant", envvar=env("min_grade"))
    ] = 1,
    depth: Annotated[
        int,
        typer.Option(min=1, help="candidates per query used, from the top", envvar=env("depth")),
    ] = 100,
    query_ids: Annotated[
        Path | None,
        typer.Option(
            help="file of query ids (one per line) to fit on; default: every judged query",
            envvar=env("query_ids"),
        ),
    ] = None,
) -> None:
    """Fit Platt scaling of MODEL's score (per query token for a late-interaction model,
    whose score sums over them); save it as MODEL/calibration.json.

    /v1/rerank and /v1/search then report probabilities of relevance in [0, 1], as Cohere's
    and Jina's APIs do; the ranking is unchanged. Fit on judgments the model did not train on.
    """
    from evaluation.calibration import fit_calibration
    from index.readers import read_queries
    from models.cross_encoder import is_cross_encoder
    from models.registry import calibration_folder, load_late_interaction, zero_shot_backbone

    ids = read_query_ids(query_ids) if query_ids is not None else None
    if Path(model).is_dir() and is_cross_encoder(model):
        # a cross-encoder's logit is one number per pair, whatever the query's length
        fitted, quality = fit_calibration(
            run, qrels, min_grade=min_grade, depth=depth, query_ids=ids
        )
        report(fitted, quality, fitted.save(Path(model)), "score")
        return
    folder = calibration_folder(model)
    texts = read_queries(queries, split)
    late = load_late_interaction(model, device="cpu")
    counts = dict(zip(texts, late.query_token_counts(list(texts.values())), strict=True))
    fitted, quality = fit_calibration(
        run, qrels, min_grade=min_grade, depth=depth, query_ids=ids, query_tokens=counts
    )
    # A folder's fingerprint hashes its files; untrained MaxSim's hashes the loaded backbone
    # (config included, so it moves with the transformers version): recorded for folders only.
    folder_model = zero_shot_backbone(model) is None
    calibration = replace(
        fitted, model_fingerprint=(late.fingerprint or "") if folder_model else ""
    )
    report(calibration, quality, calibration.save(folder), "score / query tokens")


def report(
    calibration: ScoreCalibration, quality: CalibrationQuality, path: Path, feature: str
) -> None:
    """Print the fit, its quality on the candidates it was fitted on, and where it went."""
    typer.echo(
        f"P(relevant) = sigmoid({calibration.slope:.4f} * {feature} "
        f"{calibration.intercept:+.4f}) on {quality.pairs} candidates "
        f"({quality.prevalence:.1%} relevant): Brier {quality.brier:.4f} "
        f"(base rate {quality.brier_of_prevalence:.4f}), "
        f"ECE {quality.expected_calibration_error:.4f}"
    )
    typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add ``calibrate`` to the ``loupe`` command line."""
    app.command("calibrate")(user_errors(calibrate))
