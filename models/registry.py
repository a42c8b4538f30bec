"""Loading a re-ranker from a name: ``default``, a model folder or a Hugging Face name."""

from __future__ import annotations

from models.backbone import DEFAULT_MODEL
from models.encoder import EncoderConfig, TextEncoder
from models.reranker import DualEncoderReranker, Reranker


def load_reranker(spec: str = DEFAULT_MODEL, *, device: str | None = None) -> Reranker:
    """A re-ranker for ``spec``; a plain encoder re-ranks by its dual-encoder cosine."""
    return DualEncoderReranker(TextEncoder(EncoderConfig(model=spec, device=device)))
