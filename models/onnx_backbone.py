"""An encoder backbone as an ONNX graph, run by ONNX Runtime.

The graph maps ``input_ids``, ``attention_mask`` ``(batch, tokens)`` (both axes dynamic) to
``token_embeddings`` ``(batch, tokens, hidden)``: the last hidden states with padding zeroed,
which is what :meth:`models.encoder.TextEncoder.forward_tokens` computes in PyTorch. Pooling,
the late-interaction projection and the scorers stay in PyTorch: they cost little next to
the transformer.

Graphs are exported on first use into a cache folder keyed by a fingerprint of the loaded
weights (``<cache>/onnx/<fingerprint>/backbone.onnx``), or taken from a ``loupe export onnx``
folder (its ``encoder.onnx`` has the same inputs and ``token_embeddings`` output) when that
folder records the same fingerprint. Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

GRAPH_NAME = "backbone.onnx"
META_NAME = "meta.json"
OUTPUT_NAME = "token_embeddings"
EXPORT_FORMAT = 1
"""Bumped when the exported graph changes, so older cached graphs are not reused."""
OPSET = 17


class OnnxUnavailableError(RuntimeError):
    """ONNX Runtime (or the ONNX exporter) cannot run this encoder here."""


def default_cache_dir() -> Path:
    """``$LOUPE_CACHE_DIR``, else ``$XDG_CACHE_HOME/loupe``, else ``~/.cache/loupe``."""
    if os.environ.get("LOUPE_CACHE_DIR"):
        return Path(os.environ["LOUPE_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "loupe"


def backbone_fingerprint(model: nn.Module) -> str:
    """A 16-hex-digit hash of a backbone's class, config and every weight as loaded (so
    fine-tuned layers and LAuReL parameters count), plus the export format."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(f"{type(model).__name__}|{EXPORT_FORMAT}|{OPSET}".encode())
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_json_string"):
        digest.update(config.to_json_string(use_diff=False).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


FINGERPRINT_ATTRIBUTE = "_loupe_weights_fingerprint"


def frozen_backbone_fingerprint(model: nn.Module) -> str:
    """:func:`backbone_fingerprint`, hashed once per loaded model and kept on it: for weights
    that no longer change (serving, index builds, ONNX export), where start-up would
    otherwise hash the same weights for the runtime choice, the engine and the build (0.13 s
    each for MiniLM). A model being trained must use :func:`backbone_fingerprint`."""
    found = getattr(model, FINGERPRINT_ATTRIBUTE, None)
    if found is None:
        found = backbone_fingerprint(model)
        setattr(model, FINGERPRINT_ATTRIBUTE, found)
    return str(found)


class _BackboneGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return hidden * attention_mask.unsqueeze(-1).to(hidden.dtype)


def export_backbone(model: nn.Module, path: Path, sample: dict[str, torch.Tensor]) -> Path:
    """Export ``model`` to ``path`` (written under a temporary name, then renamed).

    ``sample``: a tokenised batch (``input_ids``, ``attention_mask`` ``(batch, tokens)``)
    on the model's device, used to trace the graph.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    was_training = model.training
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _BackboneGraph(model).eval(),
                (sample["input_ids"], sample["attention_mask"]),
                str(tmp),
                input_names=["input_ids", "attention_mask"],
                output_names=[OUTPUT_NAME],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "tokens"},
                    "attention_mask": {0: "batch", 1: "tokens"},
                    OUTPUT_NAME: {0: "batch", 1: "tokens"},
                },
                opset_version=OPSET,
                dynamo=False,
            )
        os.replace(tmp, path)
    except Exception as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise OnnxUnavailableError(
            f"exporting {type(model).__name__} to ONNX failed: {exc}"
        ) from exc
    finally:
        model.train(was_training)
    return path


def quantize_int8(path: Path) -> Path:
    """A dynamically quantised (int8 weights) copy beside ``path``: ``*.int8.onnx``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = path.with_suffix(".int8.onnx")
    if target.is_file():
        return target
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    logging.disable(logging.WARNING)  # onnxruntime's advice to pre-process, on the root logger
    try:
        quantize_dynamic(str(path), str(tmp), weight_type=QuantType.QInt8)
        os.replace(tmp, target)
    finally:
        logging.disable(logging.NOTSET)
        tmp.unlink(missing_ok=True)
    return target


def cached_backbone_graph(
    model: nn.Module,
    sample: dict[str, torch.Tensor],
    cache_dir: Path | None = None,
    *,
    fingerprint: str | None = None,
    source: str = "",
) -> Path:
    """The cached graph of ``model``, exported now if the cache lacks it."""
    fingerprint = fingerprint or backbone_fingerprint(model)
    folder = (cache_dir or default_cache_dir()) / "onnx" / fingerprint
    path = folder / GRAPH_NAME
    if path.is_file():
        return path
    log.info("exporting %s to ONNX in %s", source or type(model).__name__, folder)
    export_backbone(model, path, sample)
    meta = {"fingerprint": fingerprint, "source": source, "torch": torch.__version__}
    (folder / META_NAME).write_text(json.dumps(meta, indent=2))
    return path


def exported_graph(folder: Path, fingerprint: str) -> Path | None:
    """``folder/encoder.onnx`` from ``loupe export onnx`` when it records ``fingerprint``."""
    config = folder / "onnx_config.json"
    graph = folder / "encoder.onnx"
    if not (config.is_file() and graph.is_file()):
        return None
    recorded = json.loads(config.read_text()).get("backbone_fingerprint")
    if recorded != fingerprint:
        log.info("%s holds another model's graph (%s, not %s)", folder, recorded, fingerprint)
        return None
    return graph


def onnx_providers(device: torch.device) -> list[str]:
    """CUDA first when the encoder runs on a GPU and onnxruntime-gpu offers it; else CPU."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if device.type == "cuda" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxTokenRunner:
    """An ONNX Runtime session over a backbone graph; a :class:`models.encoder.TokenRunner`.

    Args:
        path: the graph (inputs ``input_ids``, ``attention_mask``; output
            ``token_embeddings``).
        device: where the returned tensors go (the encoder's device).
        providers: execution providers, best first (default: :func:`onnx_providers`).
        threads: intra-op threads (default: as many as torch uses).
    """

    name = "onnx"

    def __init__(
        self,
        path: Path,
        device: torch.device,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
    ):
        try:
            import onnxruntime
        except ImportError as exc:
            raise OnnxUnavailableError("onnxruntime is not installed") from exc
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=list(providers or onnx_providers(device))
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise OnnxUnavailableError(f"ONNX Runtime cannot load {path}: {exc}") from exc
        self.path = path
        self.device = device
        self.provider: str = self.session.get_providers()[0]
        self._inputs = {i.name for i in self.session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - self._inputs
        if missing or OUTPUT_NAME not in {o.name for o in self.session.get_outputs()}:
            raise OnnxUnavailableError(
                f"{path} is not a backbone graph (needs input_ids, attention_mask -> {OUTPUT_NAME})"
            )

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(batch, tokens)`` ids and mask -> ``(batch, tokens, hidden)`` float32."""
        feed = {
            "input_ids": input_ids.detach().cpu().numpy().astype(np.int64, copy=False),
            "attention_mask": attention_mask.detach().cpu().numpy().astype(np.int64, copy=False),
        }
        hidden = self.session.run([OUTPUT_NAME], feed)[0]
        return torch.from_numpy(hidden).to(self.device)
