"""``loupe export onnx``: encoders and late-interaction re-rankers as ONNX graphs.

An encoder exports as ``encoder.onnx`` with inputs ``input_ids``, ``attention_mask``
(``(batch, tokens)``, both axes dynamic) and outputs ``token_embeddings``
``(batch, tokens, hidden)`` and ``sentence_embedding`` ``(batch, hidden)`` (pooled and
normalised as the model does). A Loupe late-interaction folder adds ``late_tokens.onnx``
(backbone, projection, normalisation: ``(batch, tokens, dim)``) and ``scorer.onnx``
(``q_tokens (1, q, dim)``, ``q_mask (1, q)``, ``d_tokens (1, n, t, dim)``, ``d_mask (1, n, t)``
-> ``scores (1, n)``). Tokenizer files are copied beside them. ``int8=True`` adds dynamically
quantised copies (``*.int8.onnx``). Every export is checked against PyTorch on a sample.
``onnx_config.json`` records the backbone's fingerprint, so that ``--runtime onnx`` with
``--onnx-dir`` (``models.runtime``) runs ``encoder.onnx`` for the model it came from.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from torch import nn

from models.encoder import EncoderConfig, TextEncoder
from models.late_interaction import LateInteractionModel, is_late_interaction_folder
from models.onnx_backbone import backbone_fingerprint
from models.pooling import cls_pool, l2_normalize, mean_pool

SAMPLE_QUERY = "what is the effect of vitamin d on bone density"
SAMPLE_TEXTS = [
    "Vitamin D helps the body absorb calcium, which keeps bones dense and strong.",
    "The stock market fell sharply on Monday after the announcement.",
    "Bone mineral density was measured in 300 adults given vitamin D supplements.",
    "Cats are small domesticated carnivorous mammals.",
    "Low vitamin D levels are associated with osteoporosis and fractures in older adults.",
    "A loupe is a small magnification device used by jewellers.",
    "Calcium and vitamin D supplementation did not change hip fracture rates.",
    "Photosynthesis converts light into chemical energy.",
]


@dataclass
class ParityReport:
    graph: str
    max_abs_difference: float
    spearman: float | None = None


class _EncoderGraph(nn.Module):
    def __init__(self, encoder: TextEncoder):
        super().__init__()
        self.model = encoder.backbone.model
        self.cls = encoder.backbone.pooling == "cls"
        self.normalize = encoder.config.normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        tokens = hidden * mask
        pooled = (cls_pool if self.cls else mean_pool)(tokens, attention_mask)
        return tokens, (l2_normalize(pooled) if self.normalize else pooled)


class _LateTokensGraph(nn.Module):
    def __init__(self, model: LateInteractionModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model.encoder.backbone.model(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state
        return self.model.project(hidden, attention_mask)


class _ScorerGraph(nn.Module):
    def __init__(self, model: LateInteractionModel):
        super().__init__()
        self.model = model

    def forward(self, q_tokens, q_mask, d_tokens, d_mask) -> torch.Tensor:
        return self.model(q_tokens, q_mask, d_tokens, d_mask)


def _export(
    module: nn.Module,
    args: tuple,
    path: Path,
    inputs: list[str],
    outputs: list[str],
    axes: dict[str, dict[int, str]],
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def _session(path: Path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _quantize(path: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = path.with_suffix(".int8.onnx")
    logging.disable(logging.WARNING)  # onnxruntime's advice to pre-process, on the root logger
    try:
        quantize_dynamic(str(path), str(target), weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)
    return target


TOKEN_AXES = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}}


def export_onnx(model: str, out: Path, *, int8: bool = False) -> list[ParityReport]:
    """Export ``model`` (an encoder, or a Loupe late-interaction folder) to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    late = (
        LateInteractionModel.load(model, device="cpu")
        if is_late_interaction_folder(model)
        else None
    )
    encoder = (
        late.encoder if late is not None else TextEncoder(EncoderConfig(model=model, device="cpu"))
    )
    encoder.backbone.tokenizer.save_pretrained(out)
    batch = encoder.tokenize(SAMPLE_TEXTS)
    feed = {
        "input_ids": batch["input_ids"].numpy(),
        "attention_mask": batch["attention_mask"].numpy(),
    }
    reports: list[ParityReport] = []

    graph = _EncoderGraph(encoder)
    _export(
        graph,
        (batch["input_ids"], batch["attention_mask"]),
        out / "encoder.onnx",
        ["input_ids", "attention_mask"],
        ["token_embeddings", "sentence_embedding"],
        {
            **TOKEN_AXES,
            "token_embeddings": {0: "batch", 1: "tokens"},
            "sentence_embedding": {0: "batch"},
        },
    )
    with torch.no_grad():
        expected = graph(batch["input_ids"], batch["attention_mask"])[1].numpy()
    paths = [out / "encoder.onnx"] + ([_quantize(out / "encoder.onnx")] if int8 else [])
    for path in paths:
        got = _session(path).run(["sentence_embedding"], feed)[0]
        reports.append(ParityReport(path.name, float(np.abs(got - expected).max())))

    if late is not None:
        tokens_graph = _LateTokensGraph(late)
        _export(
            tokens_graph,
            (batch["input_ids"], batch["attention_mask"]),
            out / "late_tokens.onnx",
            ["input_ids", "attention_mask"],
            ["tokens"],
            {**TOKEN_AXES, "tokens": {0: "batch", 1: "tokens"}},
        )
        scorer = _ScorerGraph(late)
        with torch.no_grad():
            q = late.encode_queries([SAMPLE_QUERY])
            d = late.encode_documents(SAMPLE_TEXTS)
            args = (q.tokens, q.mask.float(), d.tokens[None], d.mask[None].float())
            expected_scores = scorer(*args)[0].numpy()
        _export(
            scorer,
            args,
            out / "scorer.onnx",
            ["q_tokens", "q_mask", "d_tokens", "d_mask"],
            ["scores"],
            {
                "q_tokens": {1: "q"},
                "q_mask": {1: "q"},
                "d_tokens": {1: "docs", 2: "t"},
                "d_mask": {1: "docs", 2: "t"},
                "scores": {1: "docs"},
            },
        )
        token_paths = [out / "late_tokens.onnx"] + (
            [_quantize(out / "late_tokens.onnx")] if int8 else []
        )
        scorer_session = _session(out / "scorer.onnx")
        for path in token_paths:
            session = _session(path)
            q_feed = encoder.tokenize([SAMPLE_QUERY], late.config.q_len)
            d_feed = encoder.tokenize(SAMPLE_TEXTS, late.config.d_len)
            q_tok = session.run(
                None,
                {k: v.numpy() for k, v in q_feed.items() if k in ("input_ids", "attention_mask")},
            )[0]
            d_tok = session.run(
                None,
                {k: v.numpy() for k, v in d_feed.items() if k in ("input_ids", "attention_mask")},
            )[0]
            scores = scorer_session.run(
                None,
                {
                    "q_tokens": q_tok,
                    "q_mask": q_feed["attention_mask"].numpy().astype(np.float32),
                    "d_tokens": d_tok[None],
                    "d_mask": d_feed["attention_mask"].numpy()[None].astype(np.float32),
                },
            )[0][0]
            rho = float(stats.spearmanr(scores, expected_scores).statistic)
            reports.append(
                ParityReport(
                    f"{path.name} + scorer.onnx", float(np.abs(scores - expected_scores).max()), rho
                )
            )
    (out / "onnx_config.json").write_text(
        json.dumps(
            {
                "source": model,
                "backbone_fingerprint": backbone_fingerprint(encoder.backbone.model),
                "pooling": encoder.backbone.pooling,
                "max_length": encoder.max_length,
                "late_interaction": late.config.to_dict() if late is not None else None,
                "parity": [asdict(r) for r in reports],
            },
            indent=2,
        )
    )
    return reports
