"""``loupe train gmlm``: the parallel query generator's training job (and its autoregressive
baseline with ``--mode autoregressive``)."""

from __future__ import annotations

from typing import Annotated

import typer

from loupe.cli_common import (
    BatchSize,
    ConfigAssignments,
    ConfigFile,
    Device,
    LearningRate,
    MaxSteps,
    OutFolder,
    Quiet,
    Seed,
    env,
    load_job_config,
    schedule_overrides,
    user_errors,
)


@user_errors
def train_gmlm_command(
    config: ConfigFile = None,
    out: OutFolder = None,
    mode: Annotated[
        str | None,
        typer.Option(help="parallel (GMLM) or autoregressive (baseline)", envvar=env("mode")),
    ] = None,
    backbone: Annotated[
        str | None, typer.Option(help="encoder: default, folder or HF name", envvar=env("backbone"))
    ] = None,
    max_steps: MaxSteps = None,
    learning_rate: LearningRate = None,
    batch_size: BatchSize = None,
    seed: Seed = None,
    device: Device = None,
    assignments: ConfigAssignments = None,
    quiet: Quiet = False,
) -> None:
    """Train the GMLM query generator on (passage, query) pairs; the best model (lowest dev
    loss) lands in OUT/best, ready for `loupe generate --gmlm OUT/best`."""
    from training.gmlm_job import load_gmlm_config, train_gmlm

    overrides: dict[str, object] = {
        **schedule_overrides(out, max_steps, learning_rate, batch_size, seed, device),
        "mode": mode,
        "backbone": backbone,
    }
    train_config = load_job_config(load_gmlm_config, config, overrides, assignments)
    result = train_gmlm(train_config, show_progress=not quiet)
    best = None if result.best_metric is None else f"{-result.best_metric:.4f}"
    typer.echo(
        f"trained {result.steps} steps; best dev loss {best} at step {result.best_step}; "
        f"model in {train_config.out / 'best'}"
    )


def register(train_app: typer.Typer) -> None:
    train_app.command("gmlm")(train_gmlm_command)
