"""A Hugging Face cross-encoder (a sequence-classification model over query and document read
together) behind the :class:`~models.reranker.Reranker` interface.

Cross-encoders such as ``cross-encoder/ms-marco-MiniLM-L6-v2`` or ``BAAI/bge-reranker-base``
are what Cohere's and Jina's rerank APIs serve. They read every (query, document) pair with
the whole transformer, so they cannot score from stored token matrices as the
late-interaction re-ranker does: each request re-encodes its documents. A document too long
to share a pair with its query is read as overlapping windows and scores as its best (up to
``max_windows`` pairs for it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers import logging as transformers_logging

from models.backbone import ModelNotFoundError, resolve_model_path
from models.calibration import ScoreCalibration, platt_probabilities
from models.device import pick_device
from models.reranker import regroup

SEQUENCE_CLASSIFIER_SUFFIX = "ForSequenceClassification"


@dataclass(frozen=True)
class CrossEncoderConfig:
    """How a cross-encoder is loaded and run."""

    model: str
    """A model folder or Hugging Face name."""
    max_length: int = 512
    """Tokens of a (query, document) pair read; a longer query loses its end."""
    batch_size: int = 16
    """Pairs per forward pass."""
    device: str | None = None
    """``cpu``, ``cuda``, ... (default: CUDA when present)."""
    max_windows: int = 8
    """A document too long for one pair is read as up to this many overlapping windows and
    scores as its best window, as Cohere's rerank scores a long document by its best chunk
    (8 windows of a 512-token model: 3,360 tokens); 1 cuts it instead, as
    sentence-transformers does."""
    window_overlap: int = 32
    """Tokens each window shares with the one before."""
    query_allowance: int = 64
    """Tokens of a window pair kept for the query (and special tokens): a window holds
    ``max_length`` less these; a longer query loses its end."""


def relevance_logit(logits: torch.Tensor) -> torch.Tensor:
    """One score per pair from a classifier's logits ``(pairs, labels)``: the logit itself
    with one label, the log-odds of the second label ("relevant") with two. Either way its
    sigmoid is the model's own probability of relevance.

    >>> relevance_logit(torch.tensor([[2.0], [-1.0]])).tolist()
    [2.0, -1.0]
    >>> relevance_logit(torch.tensor([[0.5, 2.0]])).tolist()
    [1.5]
    """
    if logits.shape[-1] == 1:
        return logits[:, 0]
    if logits.shape[-1] == 2:
        return logits[:, 1] - logits[:, 0]
    raise ValueError(f"a re-ranker has one or two output labels, not {logits.shape[-1]}")


def window_spans(
    offsets: Sequence[tuple[int, int]], size: int, overlap: int, windows: int
) -> list[tuple[int, int]]:
    """Character spans of the first ``windows`` windows of ``size`` tokens over a text whose
    tokens have these character ``offsets``, each window starting ``size - overlap`` tokens
    after the one before.

    >>> window_spans([(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)], size=2, overlap=0, windows=8)
    [(0, 3), (4, 7), (8, 9)]
    >>> window_spans([(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)], size=3, overlap=1, windows=1)
    [(0, 5)]
    """
    step = size - overlap
    starts = range(0, max(1, len(offsets) - overlap), step)
    return [
        (offsets[start][0], offsets[min(start + size, len(offsets)) - 1][1])
        for start in list(starts)[:windows]
    ]


def is_cross_encoder(model: str | Path) -> bool:
    """Whether ``model`` (a folder or hub name) is a sequence-classification model. False
    when its config cannot be read (the caller's own loading then says why)."""
    try:
        config = AutoConfig.from_pretrained(resolve_model_path(str(model)))
    except (OSError, ValueError):
        return False
    architectures = getattr(config, "architectures", None) or []
    return any(name.endswith(SEQUENCE_CLASSIFIER_SUFFIX) for name in architectures)


class CrossEncoderReranker:
    """Scores each (query, document) pair with a sequence-classification transformer."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        config: CrossEncoderConfig,
        calibration: ScoreCalibration | None = None,
    ):
        if config.max_windows < 1 or config.window_overlap < 0 or config.query_allowance < 0:
            raise ValueError(
                f"{config.model}: max_windows must be at least 1, window_overlap and "
                "query_allowance at least 0"
            )
        labels = model.config.num_labels
        if labels not in (1, 2):
            raise ValueError(
                f"{config.model}: a re-ranker has one or two output labels, not {labels}"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config
        self.calibration = calibration
        """Platt scaling fitted to this model's scores; None: the model's own sigmoid."""

    @classmethod
    def load(cls, config: CrossEncoderConfig) -> CrossEncoderReranker:
        """Load the model (fp32) from a folder or hub name, with the folder's
        ``calibration.json`` where it has one."""
        path = resolve_model_path(config.model)
        transformers_logging.disable_progress_bar()
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise ModelNotFoundError(f"cannot load cross-encoder {config.model!r}: {exc}") from exc
        model.to(pick_device(config.device))
        calibration = ScoreCalibration.load(path) if Path(path).is_dir() else None
        if calibration is not None and calibration.per_query_token:
            raise ValueError(
                f"{path}: its calibration.json is per query token, as a late-interaction "
                "model's is; a cross-encoder's is not (refit it with loupe calibrate)"
            )
        limit = _positions(model)
        if limit is not None and config.max_length > limit:
            config = replace(config, max_length=limit)
        return cls(model, tokenizer, config, calibration)

    @property
    def name(self) -> str:
        return f"cross-encoder:{self.config.model}"

    @property
    def calibrated(self) -> bool:
        """Always: a fitted calibration, or else the classifier's own sigmoid."""
        return True

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def relevance_scores(self, query: str, scores: np.ndarray) -> np.ndarray:
        """``(n,)`` probabilities of relevance: the calibration's where one was fitted, else
        the model's own sigmoid of its logit (what sentence-transformers reports)."""
        if self.calibration is not None:
            return self.calibration.probabilities(scores)
        return platt_probabilities(scores, 1.0, 0.0).astype(np.float32)

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        return self.score_many([query], [documents])[0]

    @property
    def window_size(self) -> int:
        """Document tokens a window holds."""
        return self.config.max_length - self.config.query_allowance

    @property
    def reads_windows(self) -> bool:
        """Whether a long document is read as windows: more than one allowed, windows longer
        than their overlap, and a tokenizer that gives character offsets."""
        c = self.config
        return c.max_windows > 1 and self.window_size > c.window_overlap and self.tokenizer.is_fast

    def window_tokens(self, windows: int) -> int:
        """Document tokens (special tokens not counted) that the first ``windows`` windows
        cover, at most ``max_windows`` of them; without windows, what one pair holds."""
        c, size = self.config, self.window_size
        if not self.reads_windows:
            return c.max_length - self.tokenizer.num_special_tokens_to_add(pair=True)
        return size + (min(windows, c.max_windows) - 1) * (size - c.window_overlap)

    def score_many(
        self, queries: Sequence[str], documents: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        """Every query's documents scored as one stream of pairs, ``batch_size`` at a time,
        each batch sorted by length so that little of it is padding. A document too long to
        share a pair with its query is read as windows and scores as its best."""
        if len(queries) != len(documents):
            raise ValueError("one document list per query is required")
        pairs: list[tuple[str, str]] = []
        owners: list[int] = []  # the flat document each pair reads
        flat = 0
        for query, docs in zip(queries, documents, strict=True):
            for texts in self._windows(query, docs):
                pairs += [(query, text) for text in texts]
                owners += [flat] * len(texts)
                flat += 1
        pair_scores = np.zeros(len(pairs), dtype=np.float32)
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        size = self.config.batch_size
        for start in range(0, len(order), size):
            chosen = order[start : start + size]
            pair_scores[chosen] = self._score_pairs([pairs[i] for i in chosen])
        scores = np.full(flat, -np.inf, dtype=np.float32)
        np.maximum.at(scores, np.asarray(owners, dtype=np.int64), pair_scores)
        return [
            np.array(block, dtype=np.float32)
            for block in regroup(list(scores), [len(d) for d in documents])
        ]

    def _windows(self, query: str, documents: Sequence[str]) -> list[list[str]]:
        """Each document's texts to pair with the query: itself where the pair fits in
        ``max_length`` (or the model reads one window), else its windows."""
        c, tokenizer = self.config, self.tokenizer
        if not self.reads_windows or not documents:
            return [[text] for text in documents]
        room = c.max_length - tokenizer.num_special_tokens_to_add(pair=True)
        room -= len(tokenizer(query, add_special_tokens=False)["input_ids"])
        encoded = tokenizer(list(documents), add_special_tokens=False, return_offsets_mapping=True)
        out: list[list[str]] = []
        for text, offsets in zip(documents, encoded["offset_mapping"], strict=True):
            if len(offsets) <= room:
                out.append([text])
                continue
            spans = window_spans(offsets, self.window_size, c.window_overlap, c.max_windows)
            out.append([text[begin:end] for begin, end in spans])
        return out

    @torch.inference_mode()
    def _score_pairs(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """``(len(pairs),)`` relevance logits."""
        batch = self.tokenizer(
            [query for query, _ in pairs],
            [text for _, text in pairs],
            padding=True,
            truncation="longest_first",
            max_length=self.config.max_length,
            return_tensors="pt",
        ).to(self.device)
        logits = self.model(**batch).logits.float()  # (pairs, labels)
        return relevance_logit(logits).cpu().numpy()


def _positions(model: PreTrainedModel) -> int | None:
    """The longest input the model's position embeddings allow, where its config says."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if not isinstance(limit, int):
        return None
    # RoBERTa-style models offset positions by the padding index plus one
    offset = 2 if getattr(model.config, "model_type", "") in ("roberta", "xlm-roberta") else 0
    return limit - offset
