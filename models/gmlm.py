"""GMLM: a conditional masked language model that writes a target text (a query) for a source
text (a passage) by filling every target position at once (PaDIR-style, arXiv 2407.21046).

Architecture: a pretrained encoder (default: the packaged MiniLM) reads the source once; a
small transformer decoder whose self-attention is bidirectional reads the target (masks,
tokens predicted so far) and the source through cross-attention; the output layer is tied to
the encoder's word embeddings (a BERT-style transform and a bias on top). With a BERT-style
backbone, the decoder starts from the backbone's embeddings (positions, LayerNorm) and its
first ``decoder_layers`` layers (``decoder_init="backbone"``, BERT2BERT-style warm start:
far less data is needed than for a decoder learnt from scratch). A length head
classifies the target length (content tokens plus EOS, 1..max_target_length) from the pooled
source. The same class in ``mode="autoregressive"`` (causal self-attention, BOS-shifted inputs)
is the baseline decoder of the same size.

A target of length L holds L-1 content tokens, EOS at position L-1, then padding.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, cast

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from models.backbone import DEFAULT_MODEL, Backbone, load_backbone, transformer_layers
from models.gmlm_layers import (
    CrossKV,
    DecoderLayer,
    SelfAttentionCache,
    copy_bert_layer,
    is_bert_layer,
)

CONFIG_NAME = "gmlm_config.json"
WEIGHTS_NAME = "gmlm.safetensors"
GmlmMode = Literal["parallel", "autoregressive"]


@dataclass(frozen=True)
class GmlmConfig:
    backbone: str = DEFAULT_MODEL
    """Encoder (and vocabulary): 'default' (packaged MiniLM), a folder or a Hugging Face name."""
    mode: GmlmMode = "parallel"
    decoder_layers: int = 2
    max_source_length: int = 256
    max_target_length: int = 32
    """Longest target, EOS included."""
    freeze_encoder: bool = True
    dropout: float = 0.1
    decoder_init: Literal["backbone", "random"] = "backbone"
    """'backbone': copy the backbone's first layers and embeddings into the decoder (BERT-style
    backbones); 'random': a freshly initialised decoder."""
    copy_head: bool = True
    """A pointer (copy) head: each position mixes the vocabulary softmax with attention over
    the source's tokens, so words of the passage are easy to reuse (See et al., 2017)."""

    def __post_init__(self) -> None:
        if self.mode not in ("parallel", "autoregressive"):
            raise ValueError(f"mode must be 'parallel' or 'autoregressive', not {self.mode!r}")
        if self.decoder_init not in ("backbone", "random"):
            raise ValueError(
                f"decoder_init must be 'backbone' or 'random', not {self.decoder_init!r}"
            )
        if self.decoder_layers < 1 or self.max_target_length < 2 or self.max_source_length < 2:
            raise ValueError("decoder_layers >= 1, max_target_length >= 2, max_source_length >= 2")


@dataclass(frozen=True)
class SpecialTokens:
    pad: int
    mask: int
    eos: int
    bos: int
    banned: tuple[int, ...] = field(default=())
    """Never generated as content (pad, mask, bos, unk and any other special token)."""


@dataclass
class EncodedSource:
    """A batch of encoded sources and what the decoder reads of them."""

    states: torch.Tensor  # (batch, src_len, hidden)
    mask: torch.Tensor  # (batch, src_len) bool
    cross: list[CrossKV]  # one per decoder layer
    ids: torch.Tensor  # (batch, src_len) token ids, for copying
    copy_keys: torch.Tensor | None  # (batch, src_len, hidden), None without the copy head
    copyable: torch.Tensor  # (batch, src_len) bool: real, non-special source tokens

    def repeat(self, times: int) -> EncodedSource:
        """Each source ``times`` times in a row (candidates of one source stay together)."""
        twice = lambda t: t.repeat_interleave(times, 0)  # noqa: E731
        return EncodedSource(
            twice(self.states),
            twice(self.mask),
            [(twice(k), twice(v)) for k, v in self.cross],
            twice(self.ids),
            None if self.copy_keys is None else twice(self.copy_keys),
            twice(self.copyable),
        )


def special_tokens(tokenizer: object) -> SpecialTokens:
    """Pad, mask, EOS and BOS ids of a tokenizer (BERT's [SEP] serves as EOS, [CLS] as BOS)."""
    get = lambda name: getattr(tokenizer, name, None)  # noqa: E731
    pad, mask = get("pad_token_id"), get("mask_token_id")
    eos = get("sep_token_id") if get("sep_token_id") is not None else get("eos_token_id")
    bos = get("cls_token_id") if get("cls_token_id") is not None else get("bos_token_id")
    named = (("pad", pad), ("mask", mask), ("eos/sep", eos), ("bos/cls", bos))
    missing = [name for name, value in named if value is None]
    if missing:
        raise ValueError(f"the backbone's tokenizer has no {', '.join(missing)} token")
    specials = set(getattr(tokenizer, "all_special_ids", [])) | {pad, mask, bos}
    specials.discard(eos)
    return SpecialTokens(int(pad), int(mask), int(eos), int(bos), tuple(sorted(specials)))  # type: ignore[arg-type]


class GenerativeMaskedLM(nn.Module):
    """Encoder + parallel (or causal) decoder + tied output layer + length head."""

    def __init__(self, config: GmlmConfig, backbone: Backbone | None = None):
        super().__init__()
        self.config = config
        backbone = backbone or load_backbone(config.backbone)
        self.tokenizer = backbone.tokenizer
        self.encoder = backbone.model
        self.backbone_path = backbone.path
        self.special = special_tokens(self.tokenizer)
        hidden = int(self.encoder.config.hidden_size)
        heads = int(self.encoder.config.num_attention_heads)
        self.hidden = hidden
        eps = float(getattr(self.encoder.config, "layer_norm_eps", 1e-12))
        ffn = int(getattr(self.encoder.config, "intermediate_size", 4 * hidden))
        self.positions = nn.Embedding(config.max_target_length, hidden)
        nn.init.normal_(self.positions.weight, std=0.02)
        self.input_norm = nn.LayerNorm(hidden, eps=eps)
        self.layers = nn.ModuleList(
            DecoderLayer(hidden, heads, ffn, config.dropout, eps)
            for _ in range(config.decoder_layers)
        )
        if config.decoder_init == "backbone":
            self._warm_start()
        self.transform = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden))
        vocab = self.word_embeddings.weight.shape[0]
        self.output_bias = nn.Parameter(torch.zeros(vocab))
        self.length_head = nn.Sequential(
            nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, config.max_target_length)
        )
        self.copy_query = nn.Linear(hidden, hidden) if config.copy_head else None
        self.copy_key = nn.Linear(hidden, hidden) if config.copy_head else None
        self.copy_gate = nn.Linear(hidden, 1) if config.copy_head else None
        self.encoder.requires_grad_(not config.freeze_encoder)

    @property
    def decoder_layers(self) -> list[DecoderLayer]:
        """The decoder blocks, in order."""
        return [cast(DecoderLayer, layer) for layer in self.layers]

    @torch.no_grad()
    def _warm_start(self) -> None:
        """Decoder embeddings and layers from the backbone (BERT-style names required); decoder
        layers beyond the backbone's depth stay freshly initialised."""
        embeddings = getattr(self.encoder, "embeddings", None)
        layers = transformer_layers(self.encoder)
        if embeddings is None or not is_bert_layer(layers[0]):
            raise ValueError(
                f"decoder_init='backbone' needs a BERT-style backbone; "
                f"{type(self.encoder).__name__} is not one (use decoder_init='random')"
            )
        table = embeddings.position_embeddings.weight
        if table.shape[0] < self.config.max_target_length:
            raise ValueError(
                f"the backbone has {table.shape[0]} positions; fewer than max_target_length"
            )
        self.positions.weight.copy_(table[: self.config.max_target_length])
        token_type = getattr(embeddings, "token_type_embeddings", None)
        if token_type is not None:  # BERT adds segment 0's embedding to every token
            self.positions.weight.add_(token_type.weight[0])
        self.input_norm.load_state_dict(embeddings.LayerNorm.state_dict())
        for target, source in zip(self.decoder_layers, layers, strict=False):
            copy_bert_layer(target, source)

    @property
    def word_embeddings(self) -> nn.Embedding:
        embeddings = self.encoder.get_input_embeddings()
        assert isinstance(embeddings, nn.Embedding)
        return embeddings

    @property
    def device(self) -> torch.device:
        return self.positions.weight.device

    # --- source side -------------------------------------------------------------------
    def tokenize_sources(self, texts: list[str]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.config.max_source_length,
            return_tensors="pt",
        )
        return {k: v.to(self.device) for k, v in batch.items()}

    def encode_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(batch, src_len)`` ids -> ``(batch, src_len, hidden)`` encoder states."""
        train_encoder = self.training and not self.config.freeze_encoder
        with torch.set_grad_enabled(train_encoder and torch.is_grad_enabled()):
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]

    def prepare_source(
        self, states: torch.Tensor, mask: torch.Tensor, ids: torch.Tensor
    ) -> EncodedSource:
        """Encoder states ``(batch, src_len, hidden)``, mask and token ids ``(batch, src_len)``
        -> what the decoder reads."""
        mask = mask.bool()
        specials = torch.tensor(
            sorted({*self.special.banned, self.special.eos}), device=ids.device, dtype=ids.dtype
        )
        return EncodedSource(
            states,
            mask,
            [layer.cross_kv(states) for layer in self.decoder_layers],
            ids,
            None if self.copy_key is None else self.copy_key(states),
            mask & ~torch.isin(ids, specials),
        )

    def encode(self, texts: list[str]) -> EncodedSource:
        batch = self.tokenize_sources(texts)
        states = self.encode_states(batch["input_ids"], batch["attention_mask"])
        return self.prepare_source(states, batch["attention_mask"], batch["input_ids"])

    def length_logits(self, source: EncodedSource) -> torch.Tensor:
        """``(batch, max_target_length)``: class i is a target of length i + 1 (EOS included)."""
        weights = source.mask.unsqueeze(-1).to(source.states.dtype)
        pooled = (source.states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.length_head(pooled)

    # --- target side -------------------------------------------------------------------
    def decode_states(
        self,
        source: EncodedSource,
        target_ids: torch.Tensor,
        target_mask: torch.Tensor | None = None,
        *,
        caches: list[SelfAttentionCache] | None = None,
        offset: int = 0,
    ) -> torch.Tensor:
        """Decoder states ``(batch, tgt_len, hidden)`` for target ids ``(batch, tgt_len)``.

        Parallel mode attends both ways over ``target_mask``; autoregressive mode is causal,
        and with ``caches`` (one per layer) decodes the new positions starting at ``offset``.
        """
        n = target_ids.shape[1]
        positions = torch.arange(offset, offset + n, device=target_ids.device)
        x = self.word_embeddings(target_ids) + self.positions(positions)[None]
        x = self.input_norm(x)  # (batch, tgt_len, hidden), as BERT's embedding output
        causal = self.config.mode == "autoregressive"
        for i, (layer, cross) in enumerate(zip(self.decoder_layers, source.cross, strict=True)):
            x = layer(
                x,
                cross,
                source.mask,
                target_mask=target_mask,
                causal=causal,
                cache=None if caches is None else caches[i],
            )
        return x

    def vocab_logits(self, states: torch.Tensor) -> torch.Tensor:
        """``(..., hidden)`` decoder states -> ``(..., vocab)`` logits (tied output layer)."""
        return self.transform(states) @ self.word_embeddings.weight.T + self.output_bias

    def token_log_probs(
        self, states: torch.Tensor, source: EncodedSource, select: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Log-probabilities of the next token at each position.

        Args:
            states: ``(batch, tgt_len, hidden)`` decoder states.
            select: ``(batch, tgt_len)`` bool: only these positions (saves the vocabulary
                projection elsewhere).
        Returns:
            ``(n_selected, vocab)`` with ``select``, else ``(batch, tgt_len, vocab)``.
        """
        b, t, h = states.shape
        everything = select is None
        if select is None:
            select = torch.ones(b, t, dtype=torch.bool, device=states.device)
        picked = states[select]  # (n, hidden)
        vocab = self.vocab_logits(picked).log_softmax(-1)
        if self.copy_query is not None and self.copy_gate is not None:
            assert source.copy_keys is not None
            scores = self.copy_query(states) @ source.copy_keys.transpose(1, 2) / h**0.5
            scores = scores.masked_fill(~source.copyable[:, None, :], -torch.inf)
            attention = scores.softmax(-1).nan_to_num(0.0)[select]  # (n, src_len)
            rows = select.nonzero()[:, 0]
            gate = torch.sigmoid(self.copy_gate(picked))  # (n, 1): the vocabulary's share
            copied = torch.zeros_like(vocab).scatter_add_(1, source.ids[rows], attention)
            vocab = torch.log((gate * vocab.exp() + (1 - gate) * copied).clamp_min(1e-12))
        return vocab.view(b, t, -1) if everything else vocab

    # --- folders -----------------------------------------------------------------------
    def trained_state(self) -> dict[str, torch.Tensor]:
        """Everything but a frozen encoder (the encoder loads from ``config.backbone``)."""
        return {
            name: tensor.detach().contiguous()
            for name, tensor in self.state_dict().items()
            if not (self.config.freeze_encoder and name.startswith("encoder."))
        }

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = asdict(self.config)
        config["backbone"] = self.config.backbone
        (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        state = self.trained_state()
        # the output layer is tied to the word embeddings: store them once
        save_file({k: v.cpu() for k, v in state.items()}, str(folder / WEIGHTS_NAME))
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: torch.device | None = None) -> GenerativeMaskedLM:
        folder = Path(folder)
        config_file = folder / CONFIG_NAME
        if not config_file.is_file():
            raise FileNotFoundError(f"{folder} is not a GMLM folder (no {CONFIG_NAME})")
        try:
            config = GmlmConfig(**json.loads(config_file.read_text()))
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{config_file}: {exc}") from exc
        model = cls(config)
        state = load_file(str(folder / WEIGHTS_NAME))
        missing, unexpected = model.load_state_dict(state, strict=False)
        not_loaded = [m for m in missing if not m.startswith("encoder.")] + list(unexpected)
        if not_loaded:
            raise ValueError(f"{folder}: weights do not match the config: {not_loaded[:5]}")
        model.eval()
        if device is not None:
            model.to(device)
        return model


def is_gmlm_folder(path: str | Path) -> bool:
    return (Path(path) / CONFIG_NAME).is_file()
