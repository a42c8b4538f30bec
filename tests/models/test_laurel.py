from __future__ import annotations

import pytest
import torch
from transformers import AutoModel

from models.laurel import (
    LaurelConfig,
    apply_laurel,
    count_added_parameters,
    laurel_parameters,
    laurel_state_dict,
)

ALL_VARIANTS = [("rw",), ("lr",), ("pa",), ("rw", "lr"), ("rw", "lr", "pa")]


def load(folder) -> torch.nn.Module:
    return AutoModel.from_pretrained(str(folder), dtype=torch.float32).eval()


def batch(vocab: int = 30522) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    ids = torch.randint(1000, vocab, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("variants", ALL_VARIANTS)
def test_identity_at_initialisation(tiny_model_dir, variants) -> None:
    plain, augmented = load(tiny_model_dir), load(tiny_model_dir)
    apply_laurel(augmented, LaurelConfig(variants=variants, rank=4))
    inputs = batch()
    with torch.no_grad():
        expected = plain(**inputs).last_hidden_state
        got = augmented(**inputs).last_hidden_state
    assert torch.equal(got, expected)


def test_identity_on_the_packaged_minilm() -> None:
    from models.backbone import resolve_model_path

    path = resolve_model_path("default")
    plain, augmented = load(path), load(path)
    apply_laurel(augmented, LaurelConfig(variants=("rw", "lr", "pa"), rank=16))
    inputs = batch()
    with torch.no_grad():
        diff = (augmented(**inputs).last_hidden_state - plain(**inputs).last_hidden_state).abs()
    assert float(diff.max()) == 0.0
    # 6 layers x 2 sites x (2 scalars + 2x384x16 low-rank + window 2 x (2x384x16) + 2 gates)
    assert count_added_parameters(augmented) == 12 * (2 + 12288 + 2 * 12288 + 2)


def test_gradients_reach_the_laurel_parameters(tiny_model_dir) -> None:
    model = load(tiny_model_dir)
    apply_laurel(model, LaurelConfig(variants=("rw", "lr", "pa"), rank=4))
    model.train()
    model(**batch()).last_hidden_state.pow(2).mean().backward()
    grads = {name: p.grad for name, p in model.named_parameters() if ".laurel." in name}
    # The first sites have fewer earlier activations than the window: those maps stay unused.
    assert all(g is not None for n, g in grads.items() if ".pa_" not in n)
    pa_gate = grads["encoder.layer.1.output.laurel.pa_gate"]
    assert pa_gate is not None and pa_gate.abs().sum() > 0
    # Zero-initialised up-projections get gradients, so training moves off the identity.
    ups = [g for n, g in grads.items() if n.endswith("up.weight")]
    assert any(g is not None and float(g.abs().sum()) > 0 for g in ups)


def test_state_dict_round_trip(tiny_model_dir) -> None:
    config = LaurelConfig(variants=("rw", "lr", "pa"), rank=4)
    trained = apply_laurel(load(tiny_model_dir), config)
    with torch.no_grad():
        for p in laurel_parameters(trained):
            p.add_(torch.randn_like(p) * 0.1)
    fresh = apply_laurel(load(tiny_model_dir), config)
    missing = fresh.load_state_dict(laurel_state_dict(trained), strict=False)
    assert not missing.unexpected_keys
    inputs = batch()
    with torch.no_grad():
        assert torch.allclose(
            fresh(**inputs).last_hidden_state, trained(**inputs).last_hidden_state
        )
        assert not torch.allclose(
            fresh(**inputs).last_hidden_state, load(tiny_model_dir)(**inputs).last_hidden_state
        )


def test_bad_configs_are_rejected(tiny_model_dir) -> None:
    with pytest.raises(ValueError):
        LaurelConfig(variants=("xx",))
    model = apply_laurel(load(tiny_model_dir), LaurelConfig())
    with pytest.raises(ValueError, match="already"):
        apply_laurel(model, LaurelConfig())
