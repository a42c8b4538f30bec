"""Text encoder: token embeddings and pooled, normalised sentence vectors, batched."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from models.backbone import DEFAULT_MODEL, Backbone, PoolingMode, load_backbone
from models.device import pick_device
from models.pooling import cls_pool, l2_normalize, mean_pool

if TYPE_CHECKING:
    from models.runtime import RuntimeChoice


@dataclass(frozen=True)
class EncoderConfig:
    """How to load and run an encoder.

    ``max_length=None`` takes the model folder's own limit (sentence-transformers'
    ``max_seq_length``, else the tokenizer's), capped at 512.
    """

    model: str = DEFAULT_MODEL
    max_length: int | None = None
    batch_size: int = 32
    device: str | None = None
    pooling: PoolingMode | None = None
    normalize: bool = True


@dataclass
class TokenBatch:
    """Token embeddings of a batch of texts.

    Attributes:
        embeddings: ``(batch, tokens, dim)`` float tensor; padded positions hold zeros.
        mask: ``(batch, tokens)`` bool tensor, True for real tokens.
    """

    embeddings: torch.Tensor
    mask: torch.Tensor


class TokenRunner(Protocol):
    """Runs the backbone outside PyTorch (e.g. ONNX Runtime, see :mod:`models.runtime`).

    Called with ``input_ids`` and ``attention_mask`` ``(batch, tokens)``; returns the last
    hidden states ``(batch, tokens, hidden)`` float32 on the encoder's device.
    """

    name: str
    provider: str

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor: ...


def _folder_max_length(model_path: str) -> int | None:
    config = Path(model_path) / "sentence_bert_config.json"
    if config.is_file():
        value = json.loads(config.read_text()).get("max_seq_length")
        return int(value) if value else None
    return None


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length (longest first), to waste little padding.

    >>> list(length_sorted_batches([3, 10, 1, 7], 2))
    [[1, 3], [0, 2]]
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


class TextEncoder:
    """Runs a transformer encoder over texts.

    ``encode`` gives one unit vector per text (for the first stage); ``encode_tokens`` gives
    per-token embeddings with a padding mask (for late interaction).
    """

    def __init__(self, config: EncoderConfig | None = None, backbone: Backbone | None = None):
        self.config = config or EncoderConfig()
        self.device = pick_device(self.config.device)
        self.backbone = backbone or load_backbone(
            self.config.model, device=self.device, pooling=self.config.pooling
        )
        self.backbone.model.to(self.device)  # type: ignore[arg-type]  # transformers' .to wrapper
        tokenizer_limit = getattr(self.backbone.tokenizer, "model_max_length", 512) or 512
        limit = self.config.max_length or _folder_max_length(self.backbone.path) or tokenizer_limit
        self.max_length = int(min(limit, tokenizer_limit, 512))
        self.runner: TokenRunner | None = None
        """Runs inference passes instead of PyTorch when set (``models.runtime``); passes that
        need gradients always run in PyTorch."""
        self.runtime_choice: RuntimeChoice | None = None
        """How the runtime was chosen, when ``models.runtime.apply_runtime`` chose it."""

    @property
    def dim(self) -> int:
        return self.backbone.hidden_size

    @property
    def model_name(self) -> str:
        """The model as a user names it: ``default``, a hub name, or an absolute folder."""
        if self.config.model in ("", DEFAULT_MODEL):
            return DEFAULT_MODEL
        return self.backbone.path

    def tokenize(
        self, texts: Sequence[str], max_length: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Tokenise with padding to the longest text and truncation, on the encoder's device."""
        batch = self.backbone.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=max_length or self.max_length,
            return_tensors="pt",
        )
        return {k: v.to(self.device) for k, v in batch.items()}

    def tokenize_windows(
        self, texts: Sequence[str], window: int, overlap: int, max_windows: int
    ) -> list[list[list[int]]]:
        """Each text's token ids cut into at most ``max_windows`` windows of ``window`` tokens
        (special tokens included; every window but the last exactly ``window`` long),
        neighbours sharing ``overlap`` text tokens. One window is what ``tokenize`` gives."""
        encoded = self.backbone.tokenizer(
            list(texts),
            truncation=True,
            max_length=window,
            stride=overlap,
            return_overflowing_tokens=True,
        )
        out: list[list[list[int]]] = [[] for _ in texts]
        for ids, text in zip(
            encoded["input_ids"], encoded["overflow_to_sample_mapping"], strict=True
        ):
            if len(out[text]) < max_windows:
                out[text].append(list(ids))
        return out

    def pad_token_ids(self, ids: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """Already tokenised sequences as one padded batch on the encoder's device."""
        batch = self.backbone.tokenizer.pad(
            {"input_ids": [list(x) for x in ids]}, return_tensors="pt"
        )
        return {k: v.to(self.device) for k, v in batch.items()}

    def encode_token_ids(
        self,
        sequences: Sequence[Sequence[int]],
        encode: Callable[[TokenBatch], torch.Tensor],
        batch_size: int = 32,
        show_progress: bool = False,
    ) -> list[np.ndarray]:
        """``encode`` of already tokenised sequences, batched by length: one unpadded float16
        ``(len_i, k)`` matrix per sequence, in input order. ``encode`` maps a backbone batch to
        ``(n, length, k)``."""
        out: list[np.ndarray] = [np.zeros((0, 1), np.float16)] * len(sequences)
        with tqdm(total=len(sequences), desc="encoding", disable=not show_progress) as bar:
            for rows in length_sorted_batches([len(ids) for ids in sequences], batch_size):
                raw = self.forward_tokens(self.pad_token_ids([sequences[r] for r in rows]))
                encoded = encode(raw).to(torch.float16).cpu().numpy()
                for row, r in enumerate(rows):
                    out[r] = encoded[row, : len(sequences[r])]
                bar.update(len(rows))
        return out

    def count_tokens(self, texts: Sequence[str], max_length: int | None = None) -> list[int]:
        """Number of tokens of each text after truncation at ``max_length`` (default: the
        encoder's own limit), special tokens included."""
        limit = max_length or self.max_length
        ids = self.backbone.tokenizer(list(texts), truncation=True, max_length=limit)["input_ids"]
        return [len(x) for x in ids]

    def forward_tokens(self, batch: dict[str, torch.Tensor]) -> TokenBatch:
        """Run the backbone on a tokenised batch; gradients flow if enabled by the caller.

        Inference passes go to ``self.runner`` when one is set (ONNX Runtime); a pass that
        needs gradients runs in PyTorch whatever the runtime.
        """
        mask = batch["attention_mask"].bool()
        if self.runner is not None and not self._needs_gradients():
            hidden = self.runner(batch["input_ids"], batch["attention_mask"])
        else:
            hidden = self.backbone.model(**batch).last_hidden_state
        return TokenBatch(embeddings=hidden * mask.unsqueeze(-1), mask=mask)

    def _needs_gradients(self) -> bool:
        return torch.is_grad_enabled() and any(
            p.requires_grad for p in self.backbone.model.parameters()
        )

    @property
    def runtime(self) -> str:
        """Where inference passes run: ``torch`` or the runner's name (``onnx``)."""
        return "torch" if self.runner is None else self.runner.name

    def pool(self, tokens: TokenBatch) -> torch.Tensor:
        """``(batch, tokens, dim) -> (batch, dim)``, normalised if configured."""
        pool_fn = cls_pool if self.backbone.pooling == "cls" else mean_pool
        vectors = pool_fn(tokens.embeddings, tokens.mask)
        return l2_normalize(vectors) if self.config.normalize else vectors

    @torch.inference_mode()
    def encode_tokens(self, texts: Sequence[str], max_length: int | None = None) -> TokenBatch:
        """Token embeddings of one batch of texts: ``(batch, tokens, dim)`` and mask."""
        return self.forward_tokens(self.tokenize(texts, max_length))

    @torch.inference_mode()
    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        show_progress: bool = False,
        desc: str = "encoding",
    ) -> np.ndarray:
        """Sentence vectors ``(len(texts), dim)`` float32, in input order.

        Texts are batched by similar length so little time goes to padding.
        """
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        size = batch_size or self.config.batch_size
        lengths = [len(t) for t in texts]
        with tqdm(total=len(texts), desc=desc, unit="text", disable=not show_progress) as bar:
            for batch_ids in length_sorted_batches(lengths, size):
                tokens = self.encode_tokens([texts[i] for i in batch_ids])
                out[batch_ids] = self.pool(tokens).float().cpu().numpy()
                bar.update(len(batch_ids))
        return out

    def iter_token_matrices(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        show_progress: bool = False,
        desc: str = "encoding tokens",
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(index, (tokens_i, dim))`` for each text, unpadded, in length-sorted order."""
        size = batch_size or self.config.batch_size
        lengths = [len(t) for t in texts]
        with tqdm(total=len(texts), desc=desc, unit="text", disable=not show_progress) as bar:
            for batch_ids in length_sorted_batches(lengths, size):
                tokens = self.encode_tokens([texts[i] for i in batch_ids])
                for row, index in enumerate(batch_ids):
                    n = int(tokens.mask[row].sum())
                    yield index, tokens.embeddings[row, :n]
                bar.update(len(batch_ids))
