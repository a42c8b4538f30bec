"""Where the encoders run: PyTorch or ONNX Runtime, chosen by ``runtime: auto | torch | onnx``.

:func:`apply_runtime` gives a :class:`~models.encoder.TextEncoder` an ONNX Runtime runner (or
none: PyTorch). Everything that encodes goes through ``TextEncoder.forward_tokens``, so the
first-stage vectors and the late-interaction token matrices (which share the encoder when the
re-ranker sits on the same frozen backbone) follow the choice with no other change.

``auto`` measures both runtimes on a small fixed calibration batch (8 passages, a warm-up and
3 timed passes each: a few hundred milliseconds for MiniLM on two CPU cores) and keeps the
faster; ties go to PyTorch. The numbers and the choice are logged and kept on the encoder
(``encoder.runtime_choice``) for the service to show. When ONNX Runtime cannot run the model
(not installed, export fails), ``auto`` falls back to PyTorch and says why; ``onnx`` fails.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import torch

from models.encoder import TextEncoder
from models.onnx_backbone import (
    OnnxTokenRunner,
    OnnxUnavailableError,
    cached_backbone_graph,
    exported_graph,
    frozen_backbone_fingerprint,
)

log = logging.getLogger(__name__)

RuntimeName = Literal["auto", "torch", "onnx"]
RUNTIME_NAMES: tuple[str, ...] = get_args(RuntimeName)

CALIBRATION_TEXTS: tuple[str, ...] = (
    "Vitamin D helps the body absorb calcium, which keeps bones dense and strong; low levels "
    "are associated with osteoporosis and a higher risk of fractures in older adults.",
    "The stock market fell sharply on Monday after the central bank announced that interest "
    "rates would rise faster than investors had expected earlier in the year.",
    "Bone mineral density was measured in 300 adults given vitamin D supplements or a "
    "placebo for two years, with no difference found at the hip or the spine.",
    "Cats are small domesticated carnivorous mammals, kept as pets for thousands of years "
    "and valued for their companionship and their ability to hunt vermin.",
    "A loupe is a small magnification device used by jewellers and watchmakers to inspect "
    "gems, engravings and small mechanical parts closely.",
    "Photosynthesis converts light energy into chemical energy stored in glucose, releasing "
    "oxygen as a by-product in plants, algae and some bacteria.",
    "what is the effect of vitamin d on bone density",
    "how long does it take to boil an egg",
)
"""The fixed calibration batch: six passages of 29-37 tokens and two short queries."""

Measure = Callable[[str, Callable[[], object]], float]
"""``measure(runtime_name, call)``: seconds one ``call()`` takes on that runtime."""


def median_seconds(runtime: str, call: Callable[[], object], repeats: int = 3) -> float:
    """One warm-up call, then the median of ``repeats`` timed calls (seconds)."""
    del runtime  # the same procedure for every runtime
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@dataclass(frozen=True)
class RuntimeConfig:
    """How to pick the encoders' runtime.

    ``cache_dir``: where exported graphs are kept (default
    :func:`models.onnx_backbone.default_cache_dir`); ``onnx_dir``: a ``loupe export onnx``
    folder whose ``encoder.onnx`` is used for the encoder it was exported from.
    """

    runtime: RuntimeName = "auto"
    cache_dir: Path | None = None
    onnx_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIME_NAMES:
            raise ValueError(
                f"runtime must be one of {', '.join(RUNTIME_NAMES)}, not {self.runtime!r}"
            )


@dataclass(frozen=True)
class RuntimeChoice:
    """What runs an encoder, and why.

    ``provider``: the torch device for PyTorch, the ONNX Runtime execution provider for ONNX;
    ``calibration_ms``: per runtime, the median milliseconds of the calibration batch
    (``auto`` only); ``graph``: the ONNX file, when ONNX Runtime runs it.
    """

    model: str
    requested: str
    runtime: str
    provider: str
    reason: str
    calibration_ms: dict[str, float] = field(default_factory=dict)
    graph: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        timings = ", ".join(f"{k} {v:.1f} ms" for k, v in self.calibration_ms.items())
        return (
            f"{self.model}: {self.runtime} ({self.provider}), requested {self.requested}; "
            f"{self.reason}" + (f" [{timings}]" if timings else "")
        )


def onnx_runner_for(encoder: TextEncoder, config: RuntimeConfig) -> OnnxTokenRunner:
    """An ONNX Runtime runner for ``encoder``'s backbone: the export folder's graph when it
    was exported from these weights, else the cached graph (exported now if missing)."""
    model = encoder.backbone.model
    fingerprint = frozen_backbone_fingerprint(model)
    path = exported_graph(config.onnx_dir, fingerprint) if config.onnx_dir else None
    if path is None:
        sample = encoder.tokenize(CALIBRATION_TEXTS[:2])
        path = cached_backbone_graph(
            model, sample, config.cache_dir, fingerprint=fingerprint, source=encoder.model_name
        )
    return OnnxTokenRunner(path, encoder.device)


def calibrate(encoder: TextEncoder, runner: OnnxTokenRunner, measure: Measure) -> dict[str, float]:
    """Milliseconds per pass over :data:`CALIBRATION_TEXTS` in each runtime."""
    batch = encoder.tokenize(CALIBRATION_TEXTS)
    model = encoder.backbone.model

    def run_torch() -> None:
        with torch.inference_mode():
            model(**batch)
        if encoder.device.type == "cuda":
            torch.cuda.synchronize(encoder.device)

    def run_onnx() -> None:
        runner(batch["input_ids"], batch["attention_mask"])

    return {"torch": 1000 * measure("torch", run_torch), "onnx": 1000 * measure("onnx", run_onnx)}


def apply_runtime(
    encoder: TextEncoder, config: RuntimeConfig, *, measure: Measure = median_seconds
) -> RuntimeChoice:
    """Set ``encoder``'s runtime as ``config`` asks; returns (and keeps on the encoder) why.

    Raises:
        OnnxUnavailableError: ``onnx`` was asked for and ONNX Runtime cannot run the model.
    """
    name, torch_device = encoder.model_name, str(encoder.device)
    if config.runtime == "torch":
        encoder.runner = None
        choice = RuntimeChoice(name, "torch", "torch", torch_device, "requested")
    else:
        try:
            runner = onnx_runner_for(encoder, config)
        except OnnxUnavailableError as exc:
            if config.runtime == "onnx":
                raise
            encoder.runner = None
            choice = RuntimeChoice(
                name, "auto", "torch", torch_device, f"ONNX Runtime unavailable: {exc}"
            )
        else:
            if config.runtime == "onnx":
                encoder.runner = runner
                choice = RuntimeChoice(
                    name, "onnx", "onnx", runner.provider, "requested", graph=str(runner.path)
                )
            else:
                timings = calibrate(encoder, runner, measure)
                faster = "onnx" if timings["onnx"] < timings["torch"] else "torch"
                encoder.runner = runner if faster == "onnx" else None
                choice = RuntimeChoice(
                    name,
                    "auto",
                    faster,
                    runner.provider if faster == "onnx" else torch_device,
                    f"measured faster on {len(CALIBRATION_TEXTS)} calibration texts",
                    calibration_ms=timings,
                    graph=str(runner.path) if faster == "onnx" else None,
                )
    if choice.runtime == "onnx" and encoder.device.type == "cuda" and "CUDA" not in choice.provider:
        log.warning("%s runs on %s while torch has a GPU", name, choice.provider)
    encoder.runtime_choice = choice
    log.info("encoder runtime %s", choice.summary())
    return choice


def apply_runtimes(
    encoders: Iterable[TextEncoder], config: RuntimeConfig, *, measure: Measure = median_seconds
) -> list[RuntimeChoice]:
    """:func:`apply_runtime` on each distinct encoder (one shared by several users counts
    once)."""
    seen: set[int] = set()
    choices = []
    for encoder in encoders:
        if id(encoder) in seen:
            continue
        seen.add(id(encoder))
        choices.append(apply_runtime(encoder, config, measure=measure))
    return choices
