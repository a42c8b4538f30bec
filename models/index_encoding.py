"""Encoding passages for an index: first-stage vectors and re-ranker token matrices, sharing
one backbone pass when the re-ranker runs on the same frozen backbone as the encoder."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from models.encoder import TextEncoder, length_sorted_batches
from models.late_interaction import LateInteractionModel


def shares_backbone(encoder: TextEncoder, model: LateInteractionModel) -> bool:
    """True when the re-ranker's token states are the encoder's (same frozen weights)."""
    unchanged = model.config.trainable_layers == 0 and model.config.laurel is None
    return unchanged and model.config.backbone == encoder.model_name


@torch.inference_mode()
def encode_for_index(
    encoder: TextEncoder,
    model: LateInteractionModel,
    texts: Sequence[str],
    batch_size: int = 32,
    first_stage_texts: Sequence[str] | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(vectors (n, dim) float32, [(tokens_i, d) float16 ...])`` in input order.

    With a shared backbone, a passage that fits in the re-ranker's ``d_len`` tokens gets
    both from one forward pass (its token states are the same at either length); longer
    passages get a second pass truncated to ``d_len``, as the re-ranker was trained.
    ``first_stage_texts``: what the vectors encode where it is not ``texts`` (a passage
    with its doc2query queries; those are encoded apart).
    """
    vectors, matrices = _encode_for_index(encoder, model, texts, batch_size)
    if first_stage_texts is not None:
        if len(first_stage_texts) != len(texts):
            raise ValueError("one first-stage text per text is required")
        apart = [i for i, (a, b) in enumerate(zip(texts, first_stage_texts, strict=True)) if a != b]
        if apart:
            vectors[apart] = encoder.encode(
                [first_stage_texts[i] for i in apart], batch_size=batch_size
            )
    return vectors, matrices


def _encode_for_index(
    encoder: TextEncoder, model: LateInteractionModel, texts: Sequence[str], batch_size: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    if not shares_backbone(encoder, model):
        return encoder.encode(texts, batch_size=batch_size), model.document_matrices(texts)
    vectors = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    matrices: list[np.ndarray | None] = [None] * len(texts)
    longer: list[int] = []
    d_len = model.config.d_len
    for ids in length_sorted_batches([len(t) for t in texts], batch_size):
        tokens = encoder.encode_tokens([texts[i] for i in ids])
        vectors[ids] = encoder.pool(tokens).float().cpu().numpy()
        for row, i in enumerate(ids):
            n = int(tokens.mask[row].sum())
            if n <= d_len:
                projected = model.project(
                    tokens.embeddings[row : row + 1, :n], tokens.mask[row : row + 1, :n]
                )
                matrices[i] = projected[0].to(torch.float16).cpu().numpy()
            else:
                longer.append(i)
    if longer:
        for i, matrix in zip(
            longer, model.document_matrices([texts[i] for i in longer]), strict=True
        ):
            matrices[i] = matrix
    return vectors, [m for m in matrices if m is not None]
