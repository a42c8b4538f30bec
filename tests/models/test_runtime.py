"""Encoder runtimes: ONNX Runtime matches PyTorch; forced and measured (``auto``) choices."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from models.encoder import EncoderConfig, TextEncoder
from models.late_interaction import LateInteractionConfig, LateInteractionModel
from models.late_reranker import LateInteractionReranker
from models.lite import ScorerConfig
from models.onnx_backbone import OnnxUnavailableError, backbone_fingerprint
from models.runtime import RuntimeConfig, apply_runtime, apply_runtimes
from tests.conftest import build_tiny_bert

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

TEXTS = [
    "Vitamin D helps the body absorb calcium.",
    "short",
    "The stock market fell sharply on Monday after the announcement of higher rates.",
]


def fresh_encoder(folder: Path) -> TextEncoder:
    return TextEncoder(EncoderConfig(model=str(folder), device="cpu", max_length=64))


def fixed(times: dict[str, float]) -> Callable[[str, Callable[[], object]], float]:
    """A measurement that runs each call once (so it must work) and reports given seconds."""
    calls: list[str] = []

    def measure(runtime: str, call: Callable[[], object]) -> float:
        call()
        calls.append(runtime)
        return times[runtime]

    measure.calls = calls  # type: ignore[attr-defined]
    return measure


def test_onnx_vectors_and_token_matrices_match_torch(tmp_path: Path, tiny_model_dir) -> None:
    encoder = fresh_encoder(tiny_model_dir)
    vectors = encoder.encode(TEXTS)
    tokens = encoder.encode_tokens(TEXTS)
    choice = apply_runtime(encoder, RuntimeConfig("onnx", cache_dir=tmp_path))
    assert choice.runtime == "onnx" and encoder.runtime == "onnx"
    assert choice.provider == "CPUExecutionProvider"
    assert Path(choice.graph or "").is_file()
    np.testing.assert_allclose(encoder.encode(TEXTS), vectors, atol=1e-5)
    onnx_tokens = encoder.encode_tokens(TEXTS)
    assert onnx_tokens.embeddings.shape == tokens.embeddings.shape
    assert torch.equal(onnx_tokens.mask, tokens.mask)
    torch.testing.assert_close(onnx_tokens.embeddings, tokens.embeddings, atol=1e-5, rtol=1e-4)
    assert float(onnx_tokens.embeddings[1, int(tokens.mask[1].sum()) :].abs().sum()) == 0.0


def test_onnx_late_interaction_scores_match_torch(tmp_path: Path, tiny_model_dir) -> None:
    config = LateInteractionConfig(
        dim=8, q_len=8, d_len=32, scorer=ScorerConfig(kind="sorted", q_len=8, d_len=32, top_k=4)
    )
    model = LateInteractionModel(config, fresh_encoder(tiny_model_dir)).eval()
    reranker = LateInteractionReranker(model)
    expected_scores = reranker.score("vitamin d and bones", TEXTS)
    expected_matrices = model.document_matrices(TEXTS)
    apply_runtime(model.encoder, RuntimeConfig("onnx", cache_dir=tmp_path))
    np.testing.assert_allclose(
        reranker.score("vitamin d and bones", TEXTS), expected_scores, atol=1e-4
    )
    for got, want in zip(model.document_matrices(TEXTS), expected_matrices, strict=True):
        assert got.shape == want.shape and got.dtype == np.float16
        np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), atol=2e-3)


def test_forced_torch_measures_nothing_and_clears_a_runner(tmp_path: Path, tiny_model_dir) -> None:
    encoder = fresh_encoder(tiny_model_dir)
    apply_runtime(encoder, RuntimeConfig("onnx", cache_dir=tmp_path))
    measure = fixed({"torch": 1.0, "onnx": 0.5})
    choice = apply_runtime(encoder, RuntimeConfig("torch", cache_dir=tmp_path), measure=measure)
    assert (choice.runtime, choice.requested, choice.provider) == ("torch", "torch", "cpu")
    assert encoder.runner is None and encoder.runtime == "torch"
    assert encoder.runtime_choice == choice
    assert measure.calls == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("torch_s", "onnx_s", "expected"),
    [(0.020, 0.010, "onnx"), (0.010, 0.020, "torch"), (0.010, 0.010, "torch")],
)
def test_auto_keeps_the_measured_faster_runtime(
    tmp_path: Path, tiny_model_dir, torch_s: float, onnx_s: float, expected: str
) -> None:
    encoder = fresh_encoder(tiny_model_dir)
    measure = fixed({"torch": torch_s, "onnx": onnx_s})
    choice = apply_runtime(encoder, RuntimeConfig("auto", cache_dir=tmp_path), measure=measure)
    assert sorted(measure.calls) == ["onnx", "torch"]  # type: ignore[attr-defined]
    assert choice.requested == "auto" and choice.runtime == expected == encoder.runtime
    assert choice.calibration_ms == {"torch": 1000 * torch_s, "onnx": 1000 * onnx_s}
    assert (encoder.runner is not None) == (expected == "onnx")
    assert "calibration" in choice.summary()


def test_graphs_are_cached_by_fingerprint(tmp_path: Path, tiny_model_dir) -> None:
    first = apply_runtime(fresh_encoder(tiny_model_dir), RuntimeConfig("onnx", cache_dir=tmp_path))
    graph = Path(first.graph or "")
    stamp = graph.stat().st_mtime_ns
    again = apply_runtime(fresh_encoder(tiny_model_dir), RuntimeConfig("onnx", cache_dir=tmp_path))
    assert again.graph == first.graph and graph.stat().st_mtime_ns == stamp
    assert graph.parent.name == backbone_fingerprint(fresh_encoder(tiny_model_dir).backbone.model)
    other = build_tiny_bert(tmp_path / "other", seed=1)
    third = apply_runtime(fresh_encoder(other), RuntimeConfig("onnx", cache_dir=tmp_path))
    assert third.graph != first.graph


def test_a_loupe_export_folder_is_reused_for_its_own_model(tmp_path: Path, tiny_model_dir) -> None:
    from models.onnx_export import export_onnx

    export_onnx(str(tiny_model_dir), tmp_path / "export")
    cache = tmp_path / "cache"
    config = RuntimeConfig("onnx", cache_dir=cache, onnx_dir=tmp_path / "export")
    encoder = fresh_encoder(tiny_model_dir)
    expected = encoder.encode(TEXTS)
    choice = apply_runtime(encoder, config)
    assert choice.graph == str(tmp_path / "export" / "encoder.onnx")
    assert not cache.exists()
    np.testing.assert_allclose(encoder.encode(TEXTS), expected, atol=1e-5)
    other = apply_runtime(fresh_encoder(build_tiny_bert(tmp_path / "other", seed=1)), config)
    assert Path(other.graph or "").is_relative_to(cache)  # another model's export is not used


def test_without_onnx_auto_falls_back_and_onnx_fails(tmp_path: Path, tiny_model_dir) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    encoder = fresh_encoder(tiny_model_dir)
    choice = apply_runtime(encoder, RuntimeConfig("auto", cache_dir=not_a_folder))
    assert choice.runtime == "torch" and "unavailable" in choice.reason
    with pytest.raises(OnnxUnavailableError):
        apply_runtime(encoder, RuntimeConfig("onnx", cache_dir=not_a_folder))


def test_training_passes_keep_gradients_under_onnx(tmp_path: Path, tiny_model_dir) -> None:
    encoder = fresh_encoder(tiny_model_dir)
    apply_runtime(encoder, RuntimeConfig("onnx", cache_dir=tmp_path))
    out = encoder.forward_tokens(encoder.tokenize(TEXTS))
    assert out.embeddings.requires_grad  # ran in PyTorch: autograd needs it


def test_a_shared_encoder_is_set_up_once(tmp_path: Path, tiny_model_dir) -> None:
    encoder = fresh_encoder(tiny_model_dir)
    measure = fixed({"torch": 0.02, "onnx": 0.01})
    choices = apply_runtimes([encoder, encoder], RuntimeConfig("auto", tmp_path), measure=measure)
    assert len(choices) == 1 and measure.calls == ["torch", "onnx"]  # type: ignore[attr-defined]


def test_unknown_runtime_is_rejected() -> None:
    with pytest.raises(ValueError, match="runtime must be one of"):
        RuntimeConfig("tensorrt")  # type: ignore[arg-type]


def test_a_loaded_models_weights_are_hashed_once(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import models.onnx_backbone as onnx_backbone

    encoder = fresh_encoder(tiny_model_dir)
    expected = backbone_fingerprint(encoder.backbone.model)
    calls: list[int] = []
    real = onnx_backbone.backbone_fingerprint

    def counting(model: torch.nn.Module) -> str:
        calls.append(1)
        return real(model)

    monkeypatch.setattr(onnx_backbone, "backbone_fingerprint", counting)
    hashes = {onnx_backbone.frozen_backbone_fingerprint(encoder.backbone.model) for _ in range(3)}
    assert hashes == {expected} and len(calls) == 1
    assert onnx_backbone.frozen_backbone_fingerprint(fresh_encoder(tiny_model_dir).backbone.model)
    assert len(calls) == 2  # another loaded model is hashed for itself
