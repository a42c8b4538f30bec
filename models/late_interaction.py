"""The late-interaction re-ranker: backbone token embeddings, a projection, and a scorer.

Saved as a plain folder: ``config.json`` (``"loupe_type": "late-interaction"``) and
``model.safetensors`` holding what was trained (projection and scorer; the backbone too when
it was fine-tuned, under ``backbone/``). A frozen backbone is named, not copied, so a trained
re-ranker on the packaged MiniLM is a few hundred kilobytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from models.backbone import (
    DEFAULT_MODEL,
    ModelNotFoundError,
    resolve_model_path,
    transformer_layers,
)
from models.encoder import EncoderConfig, TextEncoder, TokenBatch
from models.laurel import LaurelConfig, apply_laurel
from models.lite import ScorerConfig, build_scorer
from models.pooling import l2_normalize
from models.scoring import (
    best_window_scores,
    shared_similarity_matrix,
    similarity_matrix,
    window_owners,
)

LOUPE_TYPE = "late-interaction"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass(frozen=True)
class LateInteractionConfig:
    """Architecture of a late-interaction re-ranker.

    ``dim=None`` keeps the backbone's width (no projection); ``q_len`` and ``d_len`` are the
    token limits of queries and documents (and LITE's fixed matrix size).
    """

    backbone: str = DEFAULT_MODEL
    dim: int | None = 128
    q_len: int = 32
    d_len: int = 128
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    trainable_layers: int = 0
    """Top transformer layers fine-tuned with the head (0: frozen backbone). Only those
    layers' weights are saved, on top of the named base backbone."""
    laurel: LaurelConfig | None = None
    """LAuReL residuals added to the backbone and trained (their weights alone are saved)."""
    doc_windows: int = 8
    """A document longer than ``d_len`` tokens is read as up to this many ``d_len``-token
    windows, each scored alone; its score is its best window's (MaxP). 1 reads the first
    ``d_len`` tokens only, as every model folder saved before this field does."""
    window_overlap: int | None = None
    """Tokens that consecutive windows share, so no passage is cut without context
    (None: a quarter of ``d_len``, 32 for 128)."""

    def __post_init__(self) -> None:
        if self.window_overlap is None:
            object.__setattr__(self, "window_overlap", self.d_len // 4)
        if self.doc_windows < 1:
            raise ValueError(f"doc_windows must be at least 1, got {self.doc_windows}")
        # a window holds d_len - 2 text tokens besides [CLS] and [SEP]
        if not 0 <= (self.window_overlap or 0) < self.d_len - 2:
            raise ValueError(
                f"window_overlap must be in [0, d_len - 2) = [0, {self.d_len - 2}), "
                f"got {self.window_overlap}"
            )

    def window_tokens(self, windows: int) -> int:
        """Tokens of a document (its one pair of special tokens included) that its first
        ``windows`` windows cover; at most ``doc_windows`` are read.

        >>> LateInteractionConfig(d_len=128, doc_windows=8, window_overlap=32).window_tokens(2)
        222
        """
        step = self.d_len - 2 - (self.window_overlap or 0)  # new text tokens per window
        return self.d_len + (min(windows, self.doc_windows) - 1) * step

    @property
    def max_document_tokens(self) -> int:
        """Tokens of a document the model reads.

        >>> LateInteractionConfig(d_len=128, doc_windows=8, window_overlap=32).max_document_tokens
        786
        """
        return self.window_tokens(self.doc_windows)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["loupe_type"] = LOUPE_TYPE
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LateInteractionConfig:
        data = {k: v for k, v in data.items() if k != "loupe_type"}
        data.setdefault("doc_windows", 1)  # saved before long documents were read whole
        scorer = ScorerConfig(**data.pop("scorer", {}))
        laurel = data.pop("laurel", None)
        if laurel is not None:
            laurel = LaurelConfig(**{**laurel, "variants": tuple(laurel["variants"])})
        return cls(scorer=scorer, laurel=laurel, **data)


def is_late_interaction_folder(path: str | Path) -> bool:
    config = Path(path) / CONFIG_NAME
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("loupe_type") == LOUPE_TYPE
    except json.JSONDecodeError:
        return False


@dataclass
class TokenMatrices:
    """Projected token embeddings: ``tokens (n, length, dim)``, ``mask (n, length)`` bool."""

    tokens: torch.Tensor
    mask: torch.Tensor


@dataclass(frozen=True)
class DocumentWindows:
    """Documents read as windows: ``tokens (windows, length, dim)`` and ``mask (windows,
    length)``, ``owners (windows,)`` the document each window belongs to (0 to
    ``documents - 1``, in order)."""

    tokens: torch.Tensor
    mask: torch.Tensor
    owners: torch.Tensor
    documents: int


class LateInteractionModel(nn.Module):
    """Backbone + projection + scorer. ``forward`` scores padded token batches."""

    def __init__(
        self,
        config: LateInteractionConfig,
        encoder: TextEncoder | None = None,
        *,
        device: str | None = None,
    ):
        super().__init__()
        self.encoder = encoder or TextEncoder(
            EncoderConfig(model=config.backbone, device=device, max_length=config.d_len)
        )
        self.config = replace(config, backbone=self.encoder.model_name)
        if config.laurel is not None:
            apply_laurel(self.encoder.backbone.model, config.laurel)
        # Registered as a submodule so that fine-tuned layers and LAuReL parameters reach the
        # optimizer and follow .train()/.eval()/.to().
        self.backbone_model = self.encoder.backbone.model
        hidden = self.encoder.dim
        self.projection: nn.Module
        if config.dim is None:
            self.projection = nn.Identity()
        else:
            linear = nn.Linear(hidden, config.dim, bias=False)
            nn.init.orthogonal_(linear.weight)
            self.projection = linear
        self.scorer = build_scorer(config.scorer)
        self.fingerprint: str | None = None
        """Hash of the folder this model was loaded from (None if not loaded)."""
        self.to(self.encoder.device)

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    @property
    def dim(self) -> int:
        return self.config.dim or self.encoder.dim

    def trainable_layers(self) -> list[nn.Module]:
        """The backbone's top ``config.trainable_layers`` transformer layers."""
        n = self.config.trainable_layers
        if n == 0:
            return []
        layers = transformer_layers(self.encoder.backbone.model)
        if n > len(layers) or n < 0:
            raise ValueError(f"trainable_layers={n}, but the backbone has {len(layers)} layers")
        return list(layers[-n:])

    def trainable_backbone_state(self) -> dict[str, torch.Tensor]:
        """State of the fine-tuned layers, keyed as in the backbone's own state dict."""
        wanted = {id(p) for layer in self.trainable_layers() for p in layer.parameters()}
        return {
            name: p.detach()
            for name, p in self.encoder.backbone.model.named_parameters()
            if id(p) in wanted or ".laurel." in name
        }

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.projection.parameters()) + list(self.scorer.parameters())

    # -- encoding -------------------------------------------------------------------------
    def backbone_tokens(self, texts: Sequence[str], max_length: int) -> TokenMatrices:
        """Raw backbone token states ``(n, length, hidden)``; gradients if the caller allows."""
        batch = self.encoder.tokenize(texts, max_length)
        out = self.encoder.forward_tokens(batch)
        return TokenMatrices(out.embeddings, out.mask)

    def project(self, raw: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(n, length, hidden) -> (n, length, dim)`` unit vectors, zero at padding."""
        tokens = l2_normalize(self.projection(raw.to(self.device, torch.float32)))
        return tokens * mask.to(tokens.device).unsqueeze(-1)

    def encode_queries(self, texts: Sequence[str]) -> TokenMatrices:
        raw = self.backbone_tokens(texts, self.config.q_len)
        return TokenMatrices(self.project(raw.tokens, raw.mask), raw.mask)

    def query_token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each query that its score sums over (special tokens in, cut at q_len).

        Tokenising only: no forward pass."""
        tokenizer = self.encoder.backbone.tokenizer
        ids = tokenizer(list(texts), truncation=True, max_length=self.config.q_len)["input_ids"]
        return [len(x) for x in ids]

    def encode_documents(self, texts: Sequence[str]) -> TokenMatrices:
        raw = self.backbone_tokens(texts, self.config.d_len)
        return TokenMatrices(self.project(raw.tokens, raw.mask), raw.mask)

    def document_window_ids(self, texts: Sequence[str], windows: int) -> list[list[list[int]]]:
        """Each text's token ids as at most ``windows`` ``d_len``-token windows."""
        c = self.config
        return self.encoder.tokenize_windows(texts, c.d_len, c.window_overlap or 0, windows)

    def windowed_outputs(
        self,
        texts: Sequence[str],
        windows: int,
        encode: Callable[[TokenBatch], torch.Tensor],
        batch_size: int = 32,
    ) -> list[np.ndarray]:
        """``encode`` of each text's windows (up to ``windows`` of them), the windows' rows end
        to end: one unpadded float16 ``(tokens_i, k)`` matrix per text, in input order.
        ``encode`` maps a backbone batch to ``(n, length, k)``; batches go by length."""
        flat = [
            (i, ids)
            for i, text_windows in enumerate(self.document_window_ids(texts, windows))
            for ids in text_windows
        ]
        encoded = self.encoder.encode_token_ids([ids for _, ids in flat], encode, batch_size)
        parts: list[list[np.ndarray]] = [[] for _ in texts]
        for (i, _), matrix in zip(flat, encoded, strict=True):
            parts[i].append(matrix)  # every text has at least one window
        return [p[0] if len(p) == 1 else np.concatenate(p) for p in parts]

    @torch.inference_mode()
    def document_matrices(self, texts: Sequence[str], batch_size: int = 32) -> list[np.ndarray]:
        """One unpadded ``(tokens_i, dim)`` float16 matrix per text, in input order.

        A text longer than ``d_len`` tokens gives its windows' matrices end to end (up to
        ``doc_windows`` of them, every one but the last exactly ``d_len`` rows), which
        :meth:`score_matrices` splits again to score each window."""
        return self.windowed_outputs(
            texts,
            self.config.doc_windows,
            lambda raw: self.project(raw.embeddings, raw.mask),
            batch_size,
        )

    def encode_document_windows(self, texts: Sequence[str], windows: int) -> DocumentWindows:
        """Projected windows of each text (up to ``windows``) in one padded batch, with
        gradients where the caller allows them (training a backbone on windows)."""
        ids = self.document_window_ids(texts, windows)
        raw = self.encoder.forward_tokens(
            self.encoder.pad_token_ids([w for text_windows in ids for w in text_windows])
        )
        owners = torch.tensor([i for i, ws in enumerate(ids) for _ in ws], device=self.device)
        return DocumentWindows(self.project(raw.embeddings, raw.mask), raw.mask, owners, len(texts))

    # -- scoring --------------------------------------------------------------------------
    def forward(
        self,
        q_tokens: torch.Tensor,
        q_mask: torch.Tensor,
        d_tokens: torch.Tensor,
        d_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Scores ``(batch, docs)`` from queries ``(batch, q_tokens, dim)`` and candidates
        ``(batch, docs, d_tokens, dim)`` with mask ``(batch, docs, d_tokens)``, or one pool
        ``(docs, d_tokens, dim)`` with mask ``(docs, d_tokens)`` shared by every query."""
        if d_tokens.dim() == 3:
            sim = shared_similarity_matrix(q_tokens.float(), d_tokens.float())
            d_mask = d_mask[None].expand(q_tokens.shape[0], -1, -1)
        else:
            sim = similarity_matrix(q_tokens.float(), d_tokens.float())
        return self.scorer(sim, q_mask, d_mask)

    def score_matrices(
        self, q_tokens: torch.Tensor, matrices: Sequence[torch.Tensor | np.ndarray]
    ) -> torch.Tensor:
        """Scores ``(docs,)`` of one query ``(q_tokens, dim)`` against unpadded document
        matrices ``(tokens_i, dim)``; a matrix longer than ``d_len`` is read as consecutive
        ``d_len``-row windows and scores as its best window (see :meth:`document_matrices`)."""
        device = self.device
        q_mask = torch.ones(1, q_tokens.shape[0], dtype=torch.bool, device=device)
        if max((int(m.shape[0]) for m in matrices), default=0) <= self.config.d_len:
            d_tokens, d_mask = pad_matrices(matrices, device)
            return self(q_tokens[None], q_mask, d_tokens[None], d_mask[None])[0]
        return self.score_windows(
            q_tokens[None], q_mask, stored_windows(matrices, self.config.d_len, device)
        )[0]

    def score_windows(
        self, q_tokens: torch.Tensor, q_mask: torch.Tensor, windows: DocumentWindows
    ) -> torch.Tensor:
        """Scores ``(batch, documents)`` of queries ``(batch, q_tokens, dim)`` with mask
        ``(batch, q_tokens)`` against every document of ``windows``, a pool the queries
        share: each document scores as its best window (MaxP)."""
        scores = self(q_tokens, q_mask, windows.tokens, windows.mask)  # (batch, windows)
        return best_window_scores(scores, windows.owners, windows.documents)

    # -- persistence ----------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = self.config
        tensors = {f"projection.{k}": v for k, v in self.projection.state_dict().items()}
        tensors |= {f"scorer.{k}": v for k, v in self.scorer.state_dict().items()}
        tensors |= {f"backbone.{k}": v for k, v in self.trainable_backbone_state().items()}
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, folder / WEIGHTS_NAME
        )
        (folder / CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2))
        return folder

    @classmethod
    def load(
        cls,
        folder: str | Path,
        *,
        device: str | None = None,
        share_encoder: TextEncoder | None = None,
    ) -> LateInteractionModel:
        """Load a model folder. ``share_encoder``: an already loaded encoder of the same frozen
        backbone to reuse instead of loading a second copy (ignored when the model changes
        its backbone or names another one)."""
        folder = Path(folder)
        if not is_late_interaction_folder(folder):
            raise ValueError(f"{folder} is not a Loupe late-interaction model folder")
        config = LateInteractionConfig.from_dict(json.loads((folder / CONFIG_NAME).read_text()))
        model = cls(config, _backbone_encoder(config, share_encoder, device))
        model.fingerprint = folder_fingerprint(folder)
        state = load_file(folder / WEIGHTS_NAME)
        backbone_state = _prefixed(state, "backbone.")
        if backbone_state:
            expected = set(model.trainable_backbone_state())
            if set(backbone_state) != expected:
                raise ValueError(f"{folder}: backbone weights do not match its config")
            model.encoder.backbone.model.load_state_dict(backbone_state, strict=False)
        model.projection.load_state_dict(_prefixed(state, "projection."))
        model.scorer.load_state_dict(_prefixed(state, "scorer."))
        model.eval()
        return model

    @classmethod
    def zero_shot(
        cls,
        backbone: str = DEFAULT_MODEL,
        *,
        device: str | None = None,
        share_encoder: TextEncoder | None = None,
    ) -> LateInteractionModel:
        """ColBERT-style MaxSim over ``backbone``'s own L2-normalised token states: no
        projection and nothing trained, so any encoder re-ranks by late interaction. Its
        fingerprint hashes the config and the backbone's weights, so a token store it wrote
        is read again only by the same backbone."""
        config = LateInteractionConfig(
            backbone=backbone, dim=None, scorer=ScorerConfig(kind="maxsim")
        )
        model = cls(config, _backbone_encoder(config, share_encoder, device))
        model.fingerprint = zero_shot_fingerprint(model)
        return model.eval()


def _backbone_encoder(
    config: LateInteractionConfig, share_encoder: TextEncoder | None, device: str | None
) -> TextEncoder:
    """``share_encoder`` where it is the config's frozen backbone, else a new encoder."""
    unchanged = config.trainable_layers == 0 and config.laurel is None
    if share_encoder is not None and unchanged and _names_backbone(share_encoder, config.backbone):
        return share_encoder
    return TextEncoder(EncoderConfig(model=config.backbone, device=device, max_length=config.d_len))


def _names_backbone(encoder: TextEncoder, backbone: str) -> bool:
    """Whether ``backbone`` (``default``, a hub name, or a folder relative or absolute) names
    the model ``encoder`` runs."""
    if encoder.model_name == backbone:
        return True
    try:
        return resolve_model_path(backbone) == encoder.backbone.path
    except ModelNotFoundError:
        return False


def zero_shot_fingerprint(model: LateInteractionModel) -> str:
    """A short hash of an untrained model's config and its backbone's weights."""
    from models.onnx_backbone import backbone_fingerprint

    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    digest.update(backbone_fingerprint(model.encoder.backbone.model).encode())
    return digest.hexdigest()[:16]


def folder_fingerprint(folder: Path) -> str:
    """A short hash of a model folder's config and weights: which model wrote a token store."""
    digest = hashlib.sha256()
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:16]


def _prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def stored_windows(
    matrices: Sequence[torch.Tensor | np.ndarray], window: int, device: torch.device | None = None
) -> DocumentWindows:
    """Unpadded ``(tokens_i, k)`` matrices whose windows lie end to end (every window but the
    last exactly ``window`` rows; see :meth:`LateInteractionModel.document_matrices`), cut
    back into padded windows ``(windows, window, k)``.

    >>> w = stored_windows([np.ones((3, 2)), np.ones((1, 2))], 2)
    >>> tuple(w.tokens.shape), w.owners.tolist(), w.mask.int().tolist()
    ((3, 2, 2), [0, 0, 1], [[1, 1], [1, 0], [1, 0]])
    """
    pieces = [
        m[start : start + window]
        for m in matrices
        for start in range(0, max(1, int(m.shape[0])), window)
    ]
    owners = torch.tensor(window_owners([int(m.shape[0]) for m in matrices], window))
    tokens, mask = pad_matrices(pieces, device)
    return DocumentWindows(tokens, mask, owners.to(tokens.device), len(matrices))


def pad_matrices(
    matrices: Sequence[torch.Tensor | np.ndarray], device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(tokens_i, dim)`` matrices into ``(n, max_tokens, dim)`` float32 and a mask.

    >>> t, m = pad_matrices([np.ones((2, 3)), np.ones((1, 3))])
    >>> tuple(t.shape), m.int().tolist()
    ((2, 2, 3), [[1, 1], [1, 0]])
    """
    lengths = [int(m.shape[0]) for m in matrices]
    length = max(lengths, default=1) or 1
    dim = int(matrices[0].shape[1]) if len(matrices) else 1
    if all(isinstance(m, np.ndarray) for m in matrices):
        # stored matrices: one numpy buffer in their own dtype (plain copies), converted to
        # float32 in a single pass; 8x faster than a tensor per matrix for 100 candidates
        dtype = np.result_type(*matrices) if len(matrices) else np.float32
        padded = np.zeros((len(matrices), length, dim), dtype=dtype)
        for i, m in enumerate(matrices):
            padded[i, : lengths[i]] = m
        out = torch.from_numpy(padded).float()
    else:
        out = torch.zeros(len(matrices), length, dim)
        for i, m in enumerate(matrices):
            out[i, : lengths[i]] = torch.as_tensor(m).float()
    mask = torch.arange(length)[None, :] < torch.tensor(lengths, dtype=torch.long).reshape(-1, 1)
    if device is not None:
        out, mask = out.to(device), mask.to(device)
    return out, mask
