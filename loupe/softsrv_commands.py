"""``loupe train softsrv``: train a SoftSRV contextual soft prompt for a frozen causal LM
(generation with it: ``loupe generate --softsrv``)."""

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
def train_softsrv_command(
    config: ConfigFile = None,
    out: OutFolder = None,
    prompt: Annotated[
        str | None,
        typer.Option(help="noncontextual, mixture or mlp", envvar=env("prompt")),
    ] = None,
    prompt_length: Annotated[
        int | None, typer.Option(min=1, help="prompt vectors", envvar=env("prompt_length"))
    ] = None,
    lm: Annotated[str | None, typer.Option(help="frozen causal LM", envvar=env("lm"))] = None,
    max_steps: MaxSteps = None,
    learning_rate: LearningRate = None,
    batch_size: BatchSize = None,
    seed: Seed = None,
    device: Device = None,
    assignments: ConfigAssignments = None,
    quiet: Quiet = False,
) -> None:
    """Train a SoftSRV contextual soft prompt for a frozen causal LM on (passage, query) pairs;
    the best prompt (dev loss) lands in OUT/best, ready for `loupe generate --softsrv`."""
    from training.softsrv_job import load_softsrv_config
    from training.softsrv_job import train_softsrv as run

    overrides: dict[str, object] = {
        **schedule_overrides(out, max_steps, learning_rate, batch_size, seed, device),
        "prompt": prompt,
        "prompt_length": prompt_length,
        "lm": lm,
    }
    train_config = load_job_config(load_softsrv_config, config, overrides, assignments)
    result = run(train_config, show_progress=not quiet)
    best = -result.best_metric if result.best_metric is not None else None
    typer.echo(
        f"trained {result.steps} steps; best dev loss {best} at step {result.best_step}; "
        f"prompt in {train_config.out / 'best'}"
    )


def register(train_app: typer.Typer) -> None:
    train_app.command("softsrv")(train_softsrv_command)
