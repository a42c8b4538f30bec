from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.backbone import ModelNotFoundError, resolve_model_path
from models.encoder import EncoderConfig, TextEncoder


def test_default_model_resolves_to_the_packaged_folder() -> None:
    path = Path(resolve_model_path("default"))
    assert (path / "config.json").is_file()
    assert resolve_model_path(None) == str(path)


def test_model_path_that_is_a_file_is_rejected(tmp_path: Path) -> None:
    file = tmp_path / "weights.bin"
    file.write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        resolve_model_path(file)


def test_unloadable_model_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="cannot load"):
        TextEncoder(EncoderConfig(model=str(tmp_path), device="cpu"))


def test_vectors_are_unit_length_and_in_input_order(tiny_encoder: TextEncoder) -> None:
    texts = ["short", "a much longer text than the others, with many more tokens in it", "mid size"]
    vectors = tiny_encoder.encode(texts, batch_size=2)
    assert vectors.shape == (3, tiny_encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    one_by_one = np.stack([tiny_encoder.encode([t])[0] for t in texts])
    np.testing.assert_allclose(vectors, one_by_one, atol=1e-5)


def test_padding_does_not_change_token_embeddings(tiny_encoder: TextEncoder) -> None:
    alone = tiny_encoder.encode_tokens(["two words"])
    padded = tiny_encoder.encode_tokens(["two words", "a far longer neighbour that forces padding"])
    n = int(alone.mask[0].sum())
    assert int(padded.mask[0].sum()) == n
    torch.testing.assert_close(padded.embeddings[0, :n], alone.embeddings[0], atol=1e-5, rtol=0)
    assert torch.all(padded.embeddings[0, n:] == 0)


def test_packaged_minilm_embeds_meaning(minilm_encoder: TextEncoder) -> None:
    cat, kitten, car = minilm_encoder.encode(["a cat", "a small kitten", "a sports car"])
    assert float(cat @ kitten) > float(cat @ car) + 0.2
    assert minilm_encoder.max_length == 256 and minilm_encoder.model_name == "default"
