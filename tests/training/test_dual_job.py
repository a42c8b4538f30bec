from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from loupe.cli import app
from models.encoder import EncoderConfig, TextEncoder
from tests.training.test_lite_job import write_triples
from training.batches import batches, load_examples
from training.dual_config import DualTrainConfig
from training.dual_job import DualEncoderTraining, train_dual
from training.run_config import TriplesSource


def config(tmp_path: Path, model_dir: Path, **extra) -> DualTrainConfig:
    values = dict(
        out=tmp_path / "out",
        model=str(model_dir),
        max_length=32,
        data=[TriplesSource(path=write_triples(tmp_path / "triples.tsv"))],
        negatives=1,
        batch_size=4,
        dev_fraction=0.0,
        max_steps=25,
        learning_rate=1e-3,
        warmup_steps=2,
        eval_every=0,
        patience=None,
        device="cpu",
    )
    values.update(extra)
    return DualTrainConfig(**values)


def test_training_lowers_the_loss_and_saves_an_encoder(tmp_path: Path, tiny_model_dir) -> None:
    cfg = config(tmp_path, tiny_model_dir)
    examples = load_examples(cfg.data)
    fixed = next(batches(examples, 8, 1, seed=3, with_teacher=False))
    with torch.no_grad():
        before = float(DualEncoderTraining(cfg).eval().loss(fixed))
    train_dual(cfg, show_progress=False)
    trained = DualEncoderTraining(cfg.model_copy(update={"model": str(cfg.out / "best")})).eval()
    with torch.no_grad():
        after = float(trained.loss(fixed))
    assert after < 0.8 * before, (before, after)
    encoder = TextEncoder(EncoderConfig(model=str(cfg.out / "best"), device="cpu"))
    assert encoder.encode(["a query"]).shape == (1, encoder.dim)


def test_laurel_on_a_frozen_encoder_saves_and_loads_with_the_folder(
    tmp_path: Path, tiny_model_dir
) -> None:
    cfg = config(
        tmp_path,
        tiny_model_dir,
        laurel=["rw", "lr"],
        laurel_rank=4,
        freeze_backbone=True,
        max_steps=5,
    )
    job = DualEncoderTraining(cfg)
    trainable = [n for n, p in job.named_parameters() if p.requires_grad]
    assert trainable and all(".laurel." in n for n in trainable)
    train_dual(cfg, show_progress=False)
    best = cfg.out / "best"
    assert (best / "laurel.json").is_file()
    from safetensors import safe_open

    with safe_open(str(best / "model.safetensors"), "pt") as weights:
        names = list(weights.keys())
    assert names and not [k for k in names if ".laurel." in k]  # plain HF weights only
    texts = ["about cats", "rain facts"]
    saved = TextEncoder(EncoderConfig(model=str(best), device="cpu"))
    plain = TextEncoder(EncoderConfig(model=str(tiny_model_dir), device="cpu"))
    assert not np.allclose(saved.encode(texts), plain.encode(texts))  # LAuReL moved
    again = TextEncoder(EncoderConfig(model=str(best), device="cpu"))
    np.testing.assert_allclose(again.encode(texts), saved.encode(texts), atol=1e-6)


def test_cli_train_dual(tmp_path: Path, tiny_model_dir) -> None:
    triples = write_triples(tmp_path / "t.tsv")
    cfg_file = tmp_path / "dual.toml"
    cfg_file.write_text(
        f'model = "{tiny_model_dir}"\nmax_length = 32\nnegatives = 1\nbatch_size = 4\n'
        f"dev_fraction = 0.25\neval_every = 2\n"
        f'[[data]]\nkind = "triples"\npath = "{triples}"\n'
    )
    result = CliRunner().invoke(
        app,
        [
            "train",
            "dual",
            "--config",
            str(cfg_file),
            "--out",
            str(tmp_path / "o"),
            "--max-steps",
            "4",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "best" / "config.json").is_file()
