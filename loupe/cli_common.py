"""What every CLI command module shares: option environment names, the user-error wrapper,
and common option types."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])


def env(name: str) -> str:
    return f"LOUPE_{name.upper()}"


def user_errors(func: F) -> F:
    """Turn expected failures (bad input, missing files) into a one-line error and exit 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from index.errors import IndexCorruptError, MalformedInputError

        try:
            return func(*args, **kwargs)
        except (MalformedInputError, IndexCorruptError, FileNotFoundError, ValueError) as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


Device = Annotated[
    str | None,
    typer.Option(help="torch device (cuda, cpu); default: CUDA if present", envvar=env("device")),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars", envvar=env("quiet"))]


class RuntimeOption(StrEnum):
    """Where the encoders run (``models.runtime``)."""

    auto = "auto"
    torch = "torch"
    onnx = "onnx"


Runtime = Annotated[
    RuntimeOption,
    typer.Option(
        help="encoder runtime: auto (measure PyTorch and ONNX Runtime, keep the faster), "
        "torch or onnx",
        envvar=env("runtime"),
    ),
]


# --- options every `loupe train` command takes ------------------------------------------------
ConfigFile = Annotated[
    Path | None,
    typer.Option(help="TOML or JSON config; flags override it", envvar=env("config")),
]
OutFolder = Annotated[Path | None, typer.Option(help="output folder", envvar=env("out"))]
MaxSteps = Annotated[int | None, typer.Option(min=1, envvar=env("max_steps"))]
LearningRate = Annotated[float | None, typer.Option(envvar=env("learning_rate"))]
BatchSize = Annotated[int | None, typer.Option(min=1, envvar=env("batch_size"))]
Seed = Annotated[int | None, typer.Option(envvar=env("seed"))]

C = TypeVar("C")


def schedule_overrides(
    out: Path | None,
    max_steps: int | None,
    learning_rate: float | None,
    batch_size: int | None,
    seed: int | None,
    device: str | None,
) -> dict[str, object]:
    """The flags every training job shares, as config overrides (None: keep the file's).

    >>> schedule_overrides(None, 10, None, None, 0, "cpu")["max_steps"]
    10
    """
    return {
        "out": out,
        "max_steps": max_steps,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "seed": seed,
        "device": device,
    }


def load_job_config(
    loader: Callable[[Path | None, dict[str, object]], C],
    path: Path | None,
    overrides: dict[str, object],
) -> C:
    """A training job's typed config from its file and the flags; invalid ones become a
    ValueError (printed as a one-line error by :func:`user_errors`)."""
    from pydantic import ValidationError

    try:
        return loader(path, overrides)
    except ValidationError as exc:
        raise ValueError(f"invalid training config: {exc}") from exc
