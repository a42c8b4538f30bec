"""Transformer decoder blocks for the GMLM generator: self-attention over the target
(bidirectional for parallel decoding, causal for the autoregressive baseline), cross-attention
over the encoded source, a feed-forward block; post-LayerNorm residuals as in BERT, so a block
can start from a pretrained BERT layer (:func:`copy_bert_layer`; BERT2BERT-style warm start)
with its cross-attention starting at zero.

Cross-attention keys and values are computed once per source (:meth:`DecoderLayer.cross_kv`)
and reused by every decoding iteration or step; the causal mode keeps a self-attention cache so
an autoregressive step costs one position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class SelfAttentionCache:
    """Keys and values of the positions decoded so far: each ``(batch, heads, t, head_dim)``."""

    keys: torch.Tensor | None = None
    values: torch.Tensor | None = None

    def extend(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.keys is None or self.values is None:
            self.keys, self.values = keys, values
        else:
            self.keys = torch.cat([self.keys, keys], dim=2)
            self.values = torch.cat([self.values, values], dim=2)
        return self.keys, self.values


CrossKV = tuple[torch.Tensor, torch.Tensor]
"""Cross-attention keys and values of one layer, each ``(batch, heads, src_len, head_dim)``."""


class DecoderLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, ffn: int, dropout: float = 0.1, eps: float = 1e-12):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = hidden // heads
        self.dropout = dropout
        self.self_qkv = nn.Linear(hidden, 3 * hidden)
        self.self_out = nn.Linear(hidden, hidden)
        self.self_norm = nn.LayerNorm(hidden, eps=eps)
        self.cross_q = nn.Linear(hidden, hidden)
        self.cross_kv_proj = nn.Linear(hidden, 2 * hidden)
        self.cross_out = nn.Linear(hidden, hidden)
        self.cross_norm = nn.LayerNorm(hidden, eps=eps)
        self.ffn = nn.Sequential(nn.Linear(hidden, ffn), nn.GELU(), nn.Linear(ffn, hidden))
        self.ffn_norm = nn.LayerNorm(hidden, eps=eps)
        self.drop = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, len, hidden)`` -> ``(batch, heads, len, head_dim)``."""
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        b, _, n, _ = x.shape
        return x.transpose(1, 2).reshape(b, n, self.heads * self.head_dim)

    def cross_kv(self, memory: torch.Tensor) -> CrossKV:
        """Keys and values of the encoded source ``(batch, src_len, hidden)``."""
        keys, values = self.cross_kv_proj(memory).chunk(2, dim=-1)
        return self._split(keys), self._split(values)

    def forward(
        self,
        x: torch.Tensor,
        cross: CrossKV,
        memory_mask: torch.Tensor,
        *,
        target_mask: torch.Tensor | None = None,
        causal: bool = False,
        cache: SelfAttentionCache | None = None,
    ) -> torch.Tensor:
        """One block.

        Args:
            x: ``(batch, tgt_len, hidden)`` target states.
            cross: this layer's :meth:`cross_kv` of the source.
            memory_mask: ``(batch, src_len)`` True on real source tokens.
            target_mask: ``(batch, tgt_len)`` True on real target positions (keys); None: all.
            causal: each position sees itself and the positions before it only.
            cache: incremental decoding: ``x`` holds the new positions, earlier keys and values
                come from (and are appended to) the cache; implies causal order.
        Returns:
            ``(batch, tgt_len, hidden)``.
        """
        p = self.dropout if self.training else 0.0
        q, k, v = self._split_qkv(self.self_qkv(x))
        if cache is not None:
            k, v = cache.extend(k, v)
            attn_mask = None  # the new position may see every cached one
            is_causal = False
        else:
            attn_mask = None if target_mask is None else target_mask[:, None, None, :]
            is_causal = causal
            if causal and attn_mask is not None:
                n = x.shape[1]
                lower = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
                attn_mask = attn_mask & lower
                is_causal = False
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=p, is_causal=is_causal
        )
        x = self.self_norm(x + self.drop(self.self_out(self._merge(attended))))
        q = self._split(self.cross_q(x))
        attended = F.scaled_dot_product_attention(
            q, cross[0], cross[1], attn_mask=memory_mask[:, None, None, :], dropout_p=p
        )
        x = self.cross_norm(x + self.drop(self.cross_out(self._merge(attended))))
        return self.ffn_norm(x + self.drop(self.ffn(x)))

    def _split_qkv(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = qkv.chunk(3, dim=-1)
        return self._split(q), self._split(k), self._split(v)


BERT_LAYER_PARAMETERS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "attention.output.LayerNorm",
    "intermediate.dense",
    "output.dense",
    "output.LayerNorm",
)


def is_bert_layer(layer: nn.Module) -> bool:
    names = {name for name, _ in layer.named_modules()}
    return all(p in names for p in BERT_LAYER_PARAMETERS)


def _linear(module: nn.Module) -> nn.Linear:
    if not isinstance(module, nn.Linear):
        raise ValueError(f"expected a Linear projection, got {type(module).__name__}")
    return module


@torch.no_grad()
def copy_bert_layer(target: DecoderLayer, bert_layer: nn.Module) -> None:
    """Start a decoder block from a BERT-style encoder layer: self-attention, feed-forward and
    their LayerNorms copied; cross-attention's output projection zeroed, so the block begins as
    the pretrained layer plus a LayerNorm."""
    if not is_bert_layer(bert_layer):
        raise ValueError(f"{type(bert_layer).__name__} is not a BERT-style layer")
    get = bert_layer.get_submodule
    q, k, v = (_linear(get(f"attention.self.{n}")) for n in ("query", "key", "value"))
    target.self_qkv.weight.copy_(torch.cat([q.weight, k.weight, v.weight]))
    target.self_qkv.bias.copy_(torch.cat([q.bias, k.bias, v.bias]))
    target.self_out.load_state_dict(get("attention.output.dense").state_dict())
    target.self_norm.load_state_dict(get("attention.output.LayerNorm").state_dict())
    target.ffn[0].load_state_dict(get("intermediate.dense").state_dict())
    target.ffn[2].load_state_dict(get("output.dense").state_dict())
    target.ffn_norm.load_state_dict(get("output.LayerNorm").state_dict())
    target.cross_out.weight.zero_()
    target.cross_out.bias.zero_()
