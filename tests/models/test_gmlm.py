"""GMLM: targets and corruption, the mask-predict schedule, decoding, training, folders."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch

from models.gmlm import GenerativeMaskedLM, GmlmConfig, is_gmlm_folder
from models.gmlm_decoding import (
    DecodingConfig,
    autoregressive_decode,
    generate,
    initial_targets,
    lowest_confidence,
    parallel_decode,
    remask_count,
)
from tests.conftest import build_tiny_bert
from training.gmlm_config import GmlmTrainConfig
from training.gmlm_corruption import CorruptionConfig, corrupt, make_targets
from training.gmlm_data import JsonlPairs, TextPair, load_pairs
from training.gmlm_job import GmlmTraining, split_pairs
from training.trainer import Trainer

WORDS = ["apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "plum"]


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("gmlm-bert"), hidden=64, layers=1)


def copy_pairs(n: int, seed: int = 0) -> list[TextPair]:
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5)))
        pairs.append(TextPair(text, text, str(i)))
    return pairs


def train_config(folder: Path, out: Path, mode: str, steps: int) -> GmlmTrainConfig:
    return GmlmTrainConfig(
        out=out,
        data=[JsonlPairs(path=out / "unused.jsonl")],
        backbone=str(folder),
        mode=mode,
        max_target_length=8,
        decoder_layers=1,
        batch_size=16,
        max_steps=steps,
        learning_rate=5e-3,
        warmup_steps=10,
        dropout=0.0,
        length_loss_weight=1.0,
        resume=False,
        eval_every=0,
    )


def train(config: GmlmTrainConfig, pairs: list[TextPair]) -> GmlmTraining:
    job = GmlmTraining(config)
    assert job.cache is not None
    job.cache.fill([p.source for p in pairs], show_progress=False)
    trainer_config = config.trainer_config(has_dev=False, show_progress=False)
    Trainer(trainer_config, job.model, job.loss, job.batches(pairs)).train()
    return job


# --- targets, corruption ---------------------------------------------------------------------
def test_targets_put_eos_after_content_and_padding_after_eos() -> None:
    targets = make_targets([[5, 6, 7, 8, 9], [4]], max_length=4, eos_id=2, pad_id=0)
    assert targets.ids.tolist() == [[5, 6, 7, 2], [4, 2, 0, 0]]  # cut to 3 tokens + EOS
    assert targets.lengths.tolist() == [4, 2]
    assert targets.valid.tolist() == [[True] * 4, [True, True, False, False]]


def test_decoding_targets_start_masked_with_eos_at_the_predicted_length() -> None:
    ids, valid = initial_targets(torch.tensor([4, 2]), mask_id=103, eos_id=102, pad_id=0)
    assert ids.tolist() == [[103, 103, 103, 102], [103, 102, 0, 0]]
    assert valid.sum(1).tolist() == [4, 2]


def test_corruption_statistics_follow_the_config() -> None:
    generator = torch.Generator().manual_seed(0)
    targets = make_targets([list(range(10, 30))] * 2000, max_length=32, eos_id=2, pad_id=0)
    config = CorruptionConfig(mask_prob=0.6, random_prob=0.3)
    result = corrupt(
        targets, config, mask_id=3, vocab_size=1000, banned=(0, 2), generator=generator
    )
    content = targets.content
    # densities are uniform on [0, 1]: about half the content positions are noised
    assert result.density.min() >= 0 and result.density.max() <= 1
    assert abs(float(result.noised[content].float().mean()) - 0.5) < 0.03
    assert bool(result.noised.any(1).all()), "every example has a noised position"
    assert not bool((result.noised & ~content).any()), "EOS and padding are never noised"
    assert bool((result.inputs[~content] == targets.ids[~content]).all())
    noised_inputs = result.inputs[result.noised]
    original = targets.ids[result.noised]
    masked = float((noised_inputs == 3).float().mean())
    kept = float((noised_inputs == original).float().mean())
    assert abs(masked - 0.6) < 0.02
    assert abs(kept - 0.1) < 0.02  # random tokens rarely equal the original (1 in ~1000)
    assert not bool(torch.isin(noised_inputs, torch.tensor([0, 2])).any())


def test_corruption_noises_at_least_one_position_at_low_density() -> None:
    targets = make_targets([[7, 8, 9]] * 50, max_length=8, eos_id=2, pad_id=0)
    config = CorruptionConfig(min_density=0.0, max_density=0.0)
    result = corrupt(targets, config, mask_id=3, vocab_size=100)
    assert result.noised.sum(1).tolist() == [1] * 50


def test_bad_corruption_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="sum to at most 1"):
        CorruptionConfig(mask_prob=0.8, random_prob=0.3)
    with pytest.raises(ValueError, match="min_density"):
        CorruptionConfig(min_density=0.7, max_density=0.2)


# --- the mask-predict schedule ------------------------------------------------------------
@pytest.mark.parametrize("iterations", [1, 2, 4, 8])
def test_linear_schedule_remasks_fewer_positions_each_pass(iterations: int) -> None:
    n = torch.tensor([16])
    counts = [int(remask_count(n, t, iterations)) for t in range(iterations)]
    assert counts[-1] == 0
    assert counts == sorted(counts, reverse=True)
    assert counts == [16 * (iterations - 1 - t) // iterations for t in range(iterations)]


def test_lowest_confidence_picks_exactly_the_count_among_eligible_positions() -> None:
    log_probs = torch.tensor([[-0.1, -5.0, -0.3, -4.0, -9.0], [-2.0, -1.0, -3.0, -0.5, -0.2]])
    eligible = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]).bool()
    chosen = lowest_confidence(log_probs, eligible, torch.tensor([2, 3]))
    assert chosen.tolist() == [
        [False, True, False, True, False],  # -9.0 is not eligible (EOS)
        [True, True, True, False, False],
    ]


# --- decoding, training -------------------------------------------------------------------
def test_a_tiny_model_learns_to_copy_and_decodes_in_parallel(
    tiny_backbone: Path, tmp_path: Path
) -> None:
    pairs = copy_pairs(400)
    job = train(train_config(tiny_backbone, tmp_path / "p", "parallel", 150), pairs)
    texts = [p.source for p in pairs[:60]]
    generations, stats = parallel_decode(
        job.model, texts, DecodingConfig(iterations=4, length_candidates=2)
    )
    exact = sum(g[0].text == t for g, t in zip(generations, texts, strict=True)) / len(texts)
    assert exact >= 0.4, f"copied {exact:.0%} exactly"
    assert 1 <= stats.iterations_run <= 4


def test_autoregressive_baseline_respects_max_length(tiny_backbone: Path, tmp_path: Path) -> None:
    pairs = copy_pairs(200)
    job = train(train_config(tiny_backbone, tmp_path / "ar", "autoregressive", 30), pairs)
    config = DecodingConfig(max_length=2, num_generations=3, temperature=1.0, seed=1)
    generations, _ = autoregressive_decode(job.model, ["apple banana cherry grape"], config)
    assert generations[0], "at least one generation"
    assert all(len(g.token_ids) <= 2 for g in generations[0])
    again, _ = autoregressive_decode(job.model, ["apple banana cherry grape"], config)
    assert [g.text for g in again[0]] == [g.text for g in generations[0]], "seeded: reproducible"


def test_parallel_generations_respect_max_length_and_are_reproducible(tiny_backbone: Path) -> None:
    torch.manual_seed(0)
    model = GenerativeMaskedLM(GmlmConfig(backbone=str(tiny_backbone), max_target_length=12))
    config = DecodingConfig(max_length=3, num_generations=4, temperature=1.0, seed=7)
    first, _ = generate(model, ["peach plum", "lemon"], config)
    second, _ = generate(model, ["peach plum", "lemon"], config)
    for generations in first:
        assert 1 <= len(generations) <= 4
        assert all(len(g.token_ids) <= 3 for g in generations)
        assert [g.score for g in generations] == sorted(
            (g.score for g in generations), reverse=True
        )
    assert [[g.text for g in gens] for gens in first] == [[g.text for g in gens] for gens in second]


def test_decoding_stops_early_when_an_iteration_changes_nothing(tiny_backbone: Path) -> None:
    model = GenerativeMaskedLM(GmlmConfig(backbone=str(tiny_backbone), max_target_length=8))
    with torch.no_grad():  # the output ignores the input: every pass predicts the same tokens
        for param in model.transform.parameters():
            param.zero_()
        model.output_bias[1000] = 5.0
    _, stats = parallel_decode(model, ["apple banana"], DecodingConfig(iterations=8))
    assert stats.iterations_run == 2


def test_frozen_encoder_gets_no_gradient_and_unrolled_loss_trains(
    tiny_backbone: Path, tmp_path: Path
) -> None:
    pairs = copy_pairs(64)
    config = train_config(tiny_backbone, tmp_path / "u", "parallel", 1)
    config = config.model_copy(update={"unrolled_stages": 2})
    job = GmlmTraining(config)
    assert job.cache is not None
    job.cache.fill([p.source for p in pairs], show_progress=False)
    batch = job.make_batch(pairs[:16])
    loss = job.loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None for p in job.model.encoder.parameters())
    length_head: Any = job.model.length_head[0]
    assert length_head.weight.grad is not None
    decoder_layer: Any = job.model.layers[0]
    assert decoder_layer.self_qkv.weight.grad is not None


def test_save_and_load_give_the_same_generations(tiny_backbone: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = GenerativeMaskedLM(GmlmConfig(backbone=str(tiny_backbone), max_target_length=8))
    folder = model.save(tmp_path / "gmlm")
    assert is_gmlm_folder(folder)
    loaded = GenerativeMaskedLM.load(folder)
    config = DecodingConfig(iterations=3, num_generations=2, length_candidates=2)
    assert [g.text for g in generate(model, ["lemon mango"], config)[0][0]] == [
        g.text for g in generate(loaded, ["lemon mango"], config)[0][0]
    ]
    assert not any(name.startswith("encoder.") for name in model.trained_state())


def test_loading_a_folder_without_a_gmlm_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a GMLM folder"):
        GenerativeMaskedLM.load(tmp_path)


# --- data ---------------------------------------------------------------------------------
def test_pairs_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"source": "a passage", "target": "a query"}\n{"source": "x"}\n')
    with pytest.raises(ValueError, match=r"pairs.jsonl:2"):
        load_pairs([JsonlPairs(path=path)])


def test_split_keeps_a_group_on_one_side() -> None:
    pairs = [TextPair(f"doc {i}", f"query {i // 3}", f"q{i // 3}") for i in range(60)]
    train, dev = split_pairs(pairs, 0.25, seed=0)
    assert len(train) + len(dev) == 60 and dev
    assert not {p.group for p in train} & {p.group for p in dev}


def test_decoder_starts_from_the_backbone_layers(tiny_backbone: Path) -> None:
    model = GenerativeMaskedLM(GmlmConfig(backbone=str(tiny_backbone), max_target_length=8))
    encoder: Any = model.encoder
    bert = encoder.encoder.layer[0]
    layer: Any = model.layers[0]
    query = bert.attention.self.query.weight
    assert torch.equal(layer.self_qkv.weight[: query.shape[0]], query)
    assert torch.equal(layer.ffn[0].weight, bert.intermediate.dense.weight)
    assert torch.count_nonzero(layer.cross_out.weight) == 0
    embeddings = encoder.embeddings
    expected = (
        embeddings.position_embeddings.weight[:8] + embeddings.token_type_embeddings.weight[0]
    )
    assert torch.allclose(model.positions.weight, expected)
    random = GenerativeMaskedLM(
        GmlmConfig(backbone=str(tiny_backbone), max_target_length=8, decoder_init="random")
    )
    random_layer: Any = random.layers[0]
    assert not torch.equal(random_layer.self_qkv.weight[: query.shape[0]], query)


def test_copy_bert_layer_copies_weights_outside_no_grad() -> None:
    """Called directly (not under ``no_grad``), the copy must neither fail on leaf
    parameters nor leave the decoder block in the autograd graph."""
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertLayer

    from models.gmlm_layers import DecoderLayer, copy_bert_layer

    config = BertConfig(hidden_size=16, num_attention_heads=2, intermediate_size=32)
    bert, block = BertLayer(config), DecoderLayer(16, 2, 32)
    copy_bert_layer(block, bert)
    attention = bert.attention.self
    expected = torch.cat([attention.query.weight, attention.key.weight, attention.value.weight])
    torch.testing.assert_close(block.self_qkv.weight, expected)
    assert block.self_qkv.weight.grad_fn is None and block.self_qkv.weight.requires_grad
