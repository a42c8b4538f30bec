"""LAuReL: learned augmented residual connections (arXiv 2411.07501) for BERT-style encoders.

A residual ``x + f(x)`` becomes ``a·f(x) + g(x, earlier activations)``. In a post-LayerNorm
BERT block each residual site computes ``LayerNorm(f(x) + x)`` (attention output and
feed-forward output); LAuReL changes the sum inside the LayerNorm:

- ``rw`` (residual weights): ``a·f(x) + b·x`` with learned scalars, both 1 at init;
- ``lr`` (low rank): ``+ A·B·x`` with ``B: d→r``, ``A: r→d``, A zero at init;
- ``pa`` (previous activations): ``+ Σ_j γ_j·A_j·B_j·x_j`` over the residual-stream inputs
  ``x_j`` of the ``pa_window`` previous sites, γ zero at init.

Every variant is exactly the identity at initialisation, so a pretrained backbone gives the
same outputs until it trains. :func:`apply_laurel` edits a model in place; the added
parameters have ``laurel`` in their names, so they save and load with the model's state
dict (see :func:`laurel_state_dict`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from models.backbone import transformer_layers

VARIANTS = ("rw", "lr", "pa")


@dataclass(frozen=True)
class LaurelConfig:
    """Which LAuReL pieces to add, e.g. ``variants=("rw", "lr")`` for RW+LR."""

    variants: tuple[str, ...] = ("rw", "lr")
    rank: int = 16
    pa_window: int = 2

    def __post_init__(self) -> None:
        unknown = set(self.variants) - set(VARIANTS)
        if unknown or not self.variants:
            raise ValueError(f"LAuReL variants must be a non-empty subset of {VARIANTS}")
        if self.rank < 1 or self.pa_window < 1:
            raise ValueError("rank and pa_window must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _History:
    """Residual-stream inputs seen so far in the current forward pass (for ``pa``)."""

    def __init__(self) -> None:
        self.activations: list[torch.Tensor] = []


class _LaurelParameters(nn.Module):
    """The added parameters of one residual site; only the configured variants' exist."""

    alpha: nn.Parameter
    beta: nn.Parameter
    down: nn.Linear
    up: nn.Linear
    pa_down: nn.ModuleList
    pa_up: nn.ModuleList
    pa_gate: nn.Parameter


def _submodule(module: nn.Module, name: str, kind: type[nn.Module]) -> Any:
    """``module.name``, checked to be a ``kind`` (the shape of a BERT ``*Output``)."""
    child = getattr(module, name, None)
    if not isinstance(child, kind):
        raise TypeError(
            f"LAuReL expects a BERT-style output module with a {kind.__name__} '{name}', "
            f"got {type(module).__name__}"
        )
    return child


class LaurelResidual(nn.Module):
    """Replaces a BERT ``*Output`` module (dense, dropout, LayerNorm over ``f(x) + x``)."""

    def __init__(self, original: nn.Module, config: LaurelConfig, history: _History):
        super().__init__()
        self.dense: nn.Linear = _submodule(original, "dense", nn.Linear)
        self.dropout: nn.Module = _submodule(original, "dropout", nn.Module)
        # the original parameter names
        self.LayerNorm: nn.Module = _submodule(original, "LayerNorm", nn.Module)
        self.config = config
        self._history = history
        width = self.dense.out_features
        self.laurel = _LaurelParameters()
        if "rw" in config.variants:
            self.laurel.alpha = nn.Parameter(torch.ones(()))
            self.laurel.beta = nn.Parameter(torch.ones(()))
        if "lr" in config.variants:
            self.laurel.down = nn.Linear(width, config.rank, bias=False)
            self.laurel.up = nn.Linear(config.rank, width, bias=False)
            nn.init.zeros_(self.laurel.up.weight)
        if "pa" in config.variants:
            self.laurel.pa_down = nn.ModuleList(
                nn.Linear(width, config.rank, bias=False) for _ in range(config.pa_window)
            )
            self.laurel.pa_up = nn.ModuleList(
                nn.Linear(config.rank, width, bias=False) for _ in range(config.pa_window)
            )
            self.laurel.pa_gate = nn.Parameter(torch.zeros(config.pa_window))

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        """``(batch, tokens, inner) , (batch, tokens, width) -> (batch, tokens, width)``."""
        f = self.dropout(self.dense(hidden_states))
        x = input_tensor
        cfg, p = self.config, self.laurel
        total = p.alpha * f + p.beta * x if "rw" in cfg.variants else f + x
        if "lr" in cfg.variants:
            total = total + p.up(p.down(x))
        if "pa" in cfg.variants:
            earlier = self._history.activations[-cfg.pa_window :][::-1]
            for j, previous in enumerate(earlier):
                down, up = p.pa_down[j], p.pa_up[j]
                total = total + p.pa_gate[j] * up(down(previous))
            self._history.activations.append(x)
        return self.LayerNorm(total)


def apply_laurel(model: nn.Module, config: LaurelConfig) -> nn.Module:
    """Give every attention and feed-forward residual of a BERT-style encoder LAuReL
    (in place; returns the model). Outputs are unchanged until the new parameters train.

    The ``pa`` history is per model and cleared at each forward pass: run one forward at a
    time per model (the service's single model thread does)."""
    history = _History()
    for layer in transformer_layers(model):
        attention_output = getattr(getattr(layer, "attention", None), "output", None)
        ffn_output = getattr(layer, "output", None)
        if attention_output is None or ffn_output is None:
            raise ValueError(f"{type(layer).__name__} is not a BERT-style layer")
        for parent, name, module in (
            (layer.attention, "output", attention_output),
            (layer, "output", ffn_output),
        ):
            if isinstance(module, LaurelResidual):
                raise ValueError("LAuReL is already applied to this model")
            setattr(parent, name, LaurelResidual(module, config, history))
    model.register_forward_pre_hook(lambda *_: history.activations.clear())
    model.laurel_config = config  # type: ignore[assignment]
    return model


def laurel_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the parameters LAuReL added (names contain ``.laurel.``)."""
    return {k: v.detach() for k, v in model.state_dict().items() if ".laurel." in k}


def laurel_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for name, p in model.named_parameters() if ".laurel." in name]


def count_added_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in laurel_parameters(model))


LAUREL_CONFIG = "laurel.json"
LAUREL_WEIGHTS = "laurel.safetensors"


def save_laurel(model: nn.Module, folder: Path) -> None:
    """Write a LAuReL-augmented model's LAuReL config and weights beside its own files."""
    config = getattr(model, "laurel_config", None)
    if config is None:
        raise ValueError("this model has no LAuReL residuals")
    (folder / LAUREL_CONFIG).write_text(json.dumps(config.to_dict()))
    save_file(
        {k: v.cpu().contiguous() for k, v in laurel_state_dict(model).items()},
        folder / LAUREL_WEIGHTS,
    )


def load_laurel(model: nn.Module, folder: Path) -> bool:
    """Re-apply LAuReL saved in ``folder`` (if any) to a freshly loaded model."""
    config_file = folder / LAUREL_CONFIG
    if not config_file.is_file():
        return False
    data = json.loads(config_file.read_text())
    apply_laurel(model, LaurelConfig(**{**data, "variants": tuple(data["variants"])}))
    result = model.load_state_dict(load_file(folder / LAUREL_WEIGHTS), strict=False)
    if result.unexpected_keys:
        raise ValueError(f"{folder}: LAuReL weights do not match: {result.unexpected_keys[:3]}")
    return True
