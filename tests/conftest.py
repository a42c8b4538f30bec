"""Shared fixtures: a tiny random BERT (fast), the packaged MiniLM (real), the shared data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from evaluation.datasets import data_root

TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def build_tiny_bert(
    folder: Path, hidden: int = 32, layers: int = 2, seed: int = 0, labels: int | None = None
) -> Path:
    """Save a randomly initialised BERT with MiniLM's tokenizer: a real model, built in a test.
    With ``labels``, a sequence classifier with that many outputs (a cross-encoder)."""
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    from models.backbone import packaged_minilm_path

    source = packaged_minilm_path()
    folder.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (source / name).exists():
            shutil.copy(source / name, folder / name)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=128,
    )
    if labels is not None:
        config.num_labels = labels
    model = BertModel(config) if labels is None else BertForSequenceClassification(config)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(autouse=True, scope="session")
def onnx_cache_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory):
    """Graphs the ONNX runtime exports on first use go to a temporary folder, not the
    user's ``~/.cache/loupe``."""
    patch = pytest.MonkeyPatch()
    patch.setenv("LOUPE_CACHE_DIR", str(tmp_path_factory.mktemp("loupe-cache")))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir: Path):
    from models.encoder import EncoderConfig, TextEncoder

    return TextEncoder(EncoderConfig(model=str(tiny_model_dir), device="cpu", max_length=64))


@pytest.fixture(scope="session")
def minilm_encoder():
    from models.encoder import EncoderConfig, TextEncoder

    return TextEncoder(EncoderConfig(device="cpu"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = data_root()
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root}")
    return root


@pytest.fixture()
def tiny_corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.jsonl"
    rows = [
        '{"_id": "d1", "title": "Cats", "text": "Cats are small domesticated felines."}',
        '{"_id": "d2", "title": "", "text": "The stock market fell sharply on Monday."}',
        '{"_id": "d3", "title": "Dogs", "text": "Dogs are loyal companions and good pets."}',
        '{"_id": "d4", "text": "Photosynthesis converts light into chemical energy.",'
        ' "metadata": {"lang": "en"}}',
    ]
    path.write_text("\n".join(rows) + "\n")
    return path
