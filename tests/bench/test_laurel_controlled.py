"""The controlled LAuReL experiment's quick mode: real SciFact data, tiny encoders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench import laurel_controlled
from evaluation.datasets import data_root

pytestmark = pytest.mark.skipif(
    not (data_root() / "beir-scifact" / "corpus.jsonl").is_file(),
    reason="needs the shared SciFact data",
)


@pytest.mark.slow
def test_quick_run_scores_every_arm(tmp_path: Path) -> None:
    payload = laurel_controlled.main(["--quick", "--out", str(tmp_path)])
    rows = {row["arm"]: row for row in payload["rows"]}
    assert set(rows) == {arm.name for arm in laurel_controlled.ARMS}
    base = rows["baseline"]["trained_parameters"]
    assert rows["+LAuReL-RW"]["trained_parameters"] == base + 4  # 2 scalars x 2 sites, 1 layer
    assert rows["+1 layer"]["trained_parameters"] > rows["+LAuReL-RW+LR"]["trained_parameters"]
    assert (tmp_path / "summary.json").is_file()


def test_laurel_arms_start_from_the_baseline_weights() -> None:
    """Same seed, same shared weights: the arms differ only by what LAuReL adds."""
    setup = laurel_controlled.Setup(layers=1, width=16, heads=2, rank=2)
    embeddings = torch.randn(30522, 16)
    base = laurel_controlled.SmallDualEncoder(setup, laurel_controlled.ARMS[0], embeddings, 3)
    rw_lr = laurel_controlled.SmallDualEncoder(setup, laurel_controlled.ARMS[2], embeddings, 3)
    ids = torch.randint(1000, 2000, (2, 7))
    mask = torch.ones_like(ids)
    base.eval()
    rw_lr.eval()
    with torch.no_grad():
        assert torch.allclose(base.embed(ids, mask), rw_lr.embed(ids, mask), atol=1e-6)
    assert not base.model.get_input_embeddings().weight.requires_grad
