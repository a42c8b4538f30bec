"""What every CLI command module shares: option environment names, the user-error wrapper,
and common option types."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from functools import wraps
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
