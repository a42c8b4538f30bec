"""Neural code: backbones, pooling, encoders and scorers. Imports no other Loupe room."""

from __future__ import annotations

from models.backbone import DEFAULT_MODEL, resolve_model_path
from models.encoder import EncoderConfig, TextEncoder, TokenBatch

__all__ = ["DEFAULT_MODEL", "EncoderConfig", "TextEncoder", "TokenBatch", "resolve_model_path"]
