"""SoftSRV soft prompts (arXiv 2410.16534): a context vector z (a passage's dual-encoder
embedding) becomes t prompt vectors of a frozen causal LM's width, prepended to its input
embeddings, so that the LM writes a query for that passage.

Three variants, all mapping ``z (batch, context_dim) -> (batch, length, width)``:

- ``noncontextual``: one learned prompt, the same for every z;
- ``mixture``: k learned prompts mixed with weights ``softmax(W z)``;
- ``mlp``: a learned base prompt plus an MLP from z to the whole prompt.

Each starts as the same prompt for every z (the gate and the MLP's last layer start at
zero), usually initialised from the LM's own token embeddings, so training begins from a
prompt of the LM's scale. A trained prompt is saved as a small folder: ``config.json``
(this config, the LM's and the context encoder's names) and ``prompt.safetensors`` (the
prompt module only; the LM is never copied).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save_file
from torch import nn

PromptKind = Literal["noncontextual", "mixture", "mlp"]
PROMPT_KINDS: tuple[PromptKind, ...] = ("noncontextual", "mixture", "mlp")
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "prompt.safetensors"


@dataclass(frozen=True)
class SoftPromptConfig:
    """Shape of a soft prompt module.

    Attributes:
        kind: ``noncontextual``, ``mixture`` or ``mlp``.
        length: prompt vectors t.
        context_dim: width of z (384 for MiniLM).
        width: the LM's input-embedding width.
        mixture_size: k learned prompts (``mixture``).
        hidden: hidden width of the MLP (``mlp``).
    """

    kind: PromptKind = "mlp"
    length: int = 8
    context_dim: int = 384
    width: int = 640
    mixture_size: int = 8
    hidden: int = 512

    def __post_init__(self) -> None:
        if self.kind not in PROMPT_KINDS:
            raise ValueError(f"prompt kind must be one of {PROMPT_KINDS}, not {self.kind!r}")
        if min(self.length, self.context_dim, self.width, self.mixture_size, self.hidden) < 1:
            raise ValueError(f"every size of a soft prompt must be positive: {self}")

    @property
    def initial_prompts(self) -> int:
        """How many ``(length, width)`` prompts the module is initialised with."""
        return self.mixture_size if self.kind == "mixture" else 1


def mix_prompts(weights: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """Weighted sum of k prompts per example.

    Args:
        weights: ``(batch, k)``, rows summing to one.
        prompts: ``(k, length, width)``.

    Returns:
        ``(batch, length, width)``.

    >>> prompts = torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]]])  # k=2, t=1, d=2
    >>> mix_prompts(torch.tensor([[0.5, 0.5], [1.0, 0.0]]), prompts).tolist()
    [[[0.5, 1.0]], [[1.0, 0.0]]]
    """
    return torch.einsum("bk,ktd->btd", weights, prompts)


class SoftPrompt(nn.Module):
    """Base class: ``forward(z (batch, context_dim)) -> (batch, length, width)``."""

    def __init__(self, config: SoftPromptConfig):
        super().__init__()
        self.config = config

    def _check(self, z: torch.Tensor) -> None:
        if z.ndim != 2 or z.shape[1] != self.config.context_dim:
            raise ValueError(
                f"context must be (batch, {self.config.context_dim}), got {tuple(z.shape)}"
            )


class NonContextualPrompt(SoftPrompt):
    """One learned prompt ``(length, width)``, repeated for every example (z is ignored)."""

    def __init__(self, config: SoftPromptConfig, init: torch.Tensor):
        super().__init__(config)
        self.prompt = nn.Parameter(init[0].clone())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self._check(z)
        return self.prompt.unsqueeze(0).expand(z.shape[0], -1, -1)


class MixturePrompt(SoftPrompt):
    """k learned prompts ``(k, length, width)`` mixed with ``softmax(W z)``; W starts at zero
    (an even mixture)."""

    def __init__(self, config: SoftPromptConfig, init: torch.Tensor):
        super().__init__(config)
        self.prompts = nn.Parameter(init.clone())
        self.gate = nn.Linear(config.context_dim, config.mixture_size)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def weights(self, z: torch.Tensor) -> torch.Tensor:
        """``(batch, k)`` mixture weights."""
        return torch.softmax(self.gate(z), dim=-1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self._check(z)
        return mix_prompts(self.weights(z), self.prompts)


class MlpPrompt(SoftPrompt):
    """A learned base prompt plus ``MLP(z)`` reshaped to ``(length, width)``; the MLP's last
    layer starts at zero, so at first every z gets the base prompt."""

    def __init__(self, config: SoftPromptConfig, init: torch.Tensor):
        super().__init__(config)
        c = config
        self.base = nn.Parameter(init[0].clone())
        self.mlp = nn.Sequential(
            nn.Linear(c.context_dim, c.hidden), nn.GELU(), nn.Linear(c.hidden, c.length * c.width)
        )
        last = self.mlp[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self._check(z)
        c = self.config
        return self.base.unsqueeze(0) + self.mlp(z).view(-1, c.length, c.width)


def build_soft_prompt(config: SoftPromptConfig, init: torch.Tensor | None = None) -> SoftPrompt:
    """A prompt module; ``init`` is ``(config.initial_prompts, length, width)`` (e.g. LM token
    embeddings), else small random values."""
    shape = (config.initial_prompts, config.length, config.width)
    if init is None:
        init = 0.02 * torch.randn(shape)
    if tuple(init.shape) != shape:
        raise ValueError(f"initial prompts must be {shape}, got {tuple(init.shape)}")
    init = init.detach().float()
    classes: dict[str, type[SoftPrompt]] = {
        "noncontextual": NonContextualPrompt,
        "mixture": MixturePrompt,
        "mlp": MlpPrompt,
    }
    return classes[config.kind](config, init)  # type: ignore[call-arg]


@dataclass(frozen=True)
class SoftSRVSpec:
    """What a saved prompt folder says besides its weights.

    Attributes:
        prompt: the prompt module's shape.
        lm: the frozen LM it steers (folder, hub name, .gguf, or the packaged Gemma).
        lm_dtype: the dtype the LM ran in while training.
        context_encoder: the encoder that gives z ('default': the packaged MiniLM).
        max_query_tokens: query length it was trained on (a default for generation).
    """

    prompt: SoftPromptConfig
    lm: str
    context_encoder: str = "default"
    lm_dtype: str = "float32"
    max_query_tokens: int = 48
    extra: dict[str, object] = field(default_factory=dict)


def save_soft_prompt(folder: Path, module: SoftPrompt, spec: SoftSRVSpec) -> None:
    """Write ``config.json`` and ``prompt.safetensors`` (the prompt module's tensors only)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps({"softsrv": asdict(spec)}, indent=2))


def read_spec(folder: Path) -> SoftSRVSpec:
    """The spec in a prompt folder's ``config.json``."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a SoftSRV prompt folder (no {CONFIG_FILE})")
    try:
        data = json.loads(path.read_text())["softsrv"]
        return SoftSRVSpec(**{**data, "prompt": SoftPromptConfig(**data["prompt"])})
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a SoftSRV config ({exc})") from exc


def load_soft_prompt(folder: Path) -> tuple[SoftPrompt, SoftSRVSpec]:
    """The prompt module (eval mode, no gradients) and the spec of a saved folder."""
    spec = read_spec(folder)
    weights = Path(folder) / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{folder} has no {WEIGHTS_FILE}")
    module = build_soft_prompt(spec.prompt)
    module.load_state_dict(load_file(str(weights)))
    module.requires_grad_(False)
    return module.eval(), spec
