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
    """Turn expected failures (bad input, missing files, folders it may not write) into a
    one-line error and exit 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from index.errors import (
            IndexCorruptError,
            MalformedInputError,
            VectorStoreUnavailableError,
        )

        try:
            return func(*args, **kwargs)
        except (
            MalformedInputError,
            IndexCorruptError,
            VectorStoreUnavailableError,
            FileNotFoundError,
            PermissionError,
            ValueError,
        ) as exc:
            typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


Device = Annotated[
    str | None,
    typer.Option(help="torch device (cuda, cpu); default: CUDA if present", envvar=env("device")),
]
QdrantUrl = Annotated[
    str | None,
    typer.Option(
        help="Qdrant URL (or local folder: qdrant-client's embedded mode) of the first stage's "
        "vectors; an index's own manifest names it otherwise; needs loupe[qdrant]",
        envvar=env("qdrant_url"),
    ),
]
QdrantApiKey = Annotated[
    str | None, typer.Option(help="Qdrant API key", envvar=env("qdrant_api_key"))
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars", envvar=env("quiet"))]
Nprobe = Annotated[
    int | None,
    typer.Option(
        min=1, help="IVF lists a search visits (default: the index's)", envvar=env("nprobe")
    ),
]
EfSearch = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="HNSW candidate list, efSearch (default: the index's; at least 2 k)",
        envvar=env("ef_search"),
    ),
]
FilterPairs = Annotated[
    list[str] | None,
    typer.Option(
        "--filter",
        metavar="FIELD=VALUE",
        help="only documents whose metadata field has this value (JSON where it parses: "
        "year=2024), or within a range: year>=2020, date<2025 (>, >=, <, <=); repeat a "
        "field for any of several values or both ends of a range, other fields for all",
    ),
]
"""``--filter FIELD=VALUE``, read with :func:`index.metadata_filter.parse_filter_pairs`."""


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
QueriesFile = Annotated[
    Path, typer.Option(help="queries (tsv or BEIR jsonl)", envvar=env("queries"))
]
QrelsFile = Annotated[Path, typer.Option(help="judgments (TREC or BEIR tsv)", envvar=env("qrels"))]
QuerySplit = Annotated[
    str | None, typer.Option(help="BEIR query split (train, test)", envvar=env("split"))
]
MaxSteps = Annotated[int | None, typer.Option(min=1, envvar=env("max_steps"))]
LearningRate = Annotated[float | None, typer.Option(envvar=env("learning_rate"))]
BatchSize = Annotated[int | None, typer.Option(min=1, envvar=env("batch_size"))]
Seed = Annotated[int | None, typer.Option(envvar=env("seed"))]
ConfigAssignments = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="set any config field, repeatable: dotted keys reach into tables "
        "(scorer.kind=sorted), values are JSON where they parse (3, 0.5, true, null, "
        '["rw","lr"], [{"path": "triples.tsv"}]) and strings otherwise; named flags win',
        envvar=env("set"),
    ),
]

TriplesFiles = Annotated[
    list[Path] | None,
    typer.Option(
        "--triples",
        help="train on this triples file (query, positive, negative per line; repeatable) "
        "instead of the config's data sources",
        envvar=env("triples"),
    ),
]

C = TypeVar("C")


def triples_sources(paths: list[Path] | None) -> list[dict[str, object]] | None:
    """``--triples`` files as the config's ``data`` list (None: not given).

    >>> triples_sources([Path("triples.tsv")])
    [{'kind': 'triples', 'path': 'triples.tsv'}]
    """
    return [{"kind": "triples", "path": str(p)} for p in paths] if paths else None


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


def parse_assignments(assignments: list[str] | None) -> dict[str, object]:
    """``--set KEY=VALUE`` options as nested config overrides: a dotted key reaches into
    tables, a value is JSON where it parses and a plain string otherwise.

    >>> parse_assignments(["scorer.kind=sorted", "distill_weight=4", 'laurel=["rw"]'])
    {'scorer': {'kind': 'sorted'}, 'distill_weight': 4, 'laurel': ['rw']}
    >>> parse_assignments(["loss"])
    Traceback (most recent call last):
    ...
    ValueError: --set expects KEY=VALUE, got 'loss'
    """
    import json

    out: dict[str, object] = {}
    for assignment in assignments or []:
        key, sep, text = assignment.partition("=")
        path = key.strip().split(".")
        if not sep or not all(path):
            raise ValueError(f"--set expects KEY=VALUE, got {assignment!r}")
        try:
            value: object = json.loads(text)
        except json.JSONDecodeError:
            value = text
        table = out
        for name in path[:-1]:
            inner = table.setdefault(name, {})
            if not isinstance(inner, dict):
                raise ValueError(f"--set {key}: {name!r} is set to a value and used as a table")
            table = inner
        table[path[-1]] = value
    return out


def load_job_config(
    loader: Callable[[Path | None, dict[str, object]], C],
    path: Path | None,
    flags: dict[str, object],
    assignments: list[str] | None = None,
) -> C:
    """A training job's typed config: the file, then the ``--set`` assignments, then the named
    flags that were given (None: not given). Invalid ones become a ValueError (printed as a
    one-line error by :func:`user_errors`)."""
    from pydantic import ValidationError

    from training.run_config import merged

    given = {key: value for key, value in flags.items() if value is not None}
    try:
        return loader(path, merged(parse_assignments(assignments), given))
    except ValidationError as exc:
        raise ValueError(f"invalid training config: {exc}") from exc
