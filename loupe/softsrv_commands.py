"""``loupe train softsrv``: train a SoftSRV contextual soft prompt for a frozen causal LM
(generation with it: ``loupe generate --softsrv``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loupe.cli_common import Device, Quiet, env, user_errors


@user_errors
def train_softsrv_command(
    config: Annotated[
        Path | None,
        typer.Option(help="TOML or JSON config; flags override it", envvar=env("config")),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="output folder", envvar=env("out"))] = None,
    prompt: Annotated[
        str | None,
        typer.Option(help="noncontextual, mixture or mlp", envvar=env("prompt")),
    ] = None,
    prompt_length: Annotated[
        int | None, typer.Option(min=1, help="prompt vectors", envvar=env("prompt_length"))
    ] = None,
    lm: Annotated[str | None, typer.Option(help="frozen causal LM", envvar=env("lm"))] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, envvar=env("max_steps"))] = None,
    learning_rate: Annotated[float | None, typer.Option(envvar=env("learning_rate"))] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, envvar=env("batch_size"))] = None,
    seed: Annotated[int | None, typer.Option(envvar=env("seed"))] = None,
    device: Device = None,
    quiet: Quiet = False,
) -> None:
    """Train a SoftSRV contextual soft prompt for a frozen causal LM on (passage, query) pairs;
    the best prompt (dev loss) lands in OUT/best, ready for `loupe generate --softsrv`."""
    from pydantic import ValidationError

    from training.softsrv_job import load_softsrv_config
    from training.softsrv_job import train_softsrv as run

    overrides: dict[str, object] = {
        "out": out,
        "prompt": prompt,
        "prompt_length": prompt_length,
        "lm": lm,
        "max_steps": max_steps,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "seed": seed,
        "device": device,
    }
    try:
        train_config = load_softsrv_config(config, overrides)
    except ValidationError as exc:
        raise ValueError(f"invalid training config: {exc}") from exc
    result = run(train_config, show_progress=not quiet)
    best = -result.best_metric if result.best_metric is not None else None
    typer.echo(
        f"trained {result.steps} steps; best dev loss {best} at step {result.best_step}; "
        f"prompt in {train_config.out / 'best'}"
    )


def register(train_app: typer.Typer) -> None:
    train_app.command("softsrv")(train_softsrv_command)
