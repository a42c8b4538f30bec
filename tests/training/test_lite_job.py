from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.late_interaction import LateInteractionConfig, LateInteractionModel
from models.late_reranker import LateInteractionReranker
from training.batches import Batch, batches, load_examples
from training.examples import examples_from_qrels, split_by_query
from training.lite_config import LiteTrainConfig
from training.lite_job import LiteTraining, train_lite
from training.run_config import QrelsSource, TriplesSource
from training.token_cache import TokenCache

TOPICS = ["cats", "dogs", "stocks", "rain", "piano", "soccer", "bread", "rockets"]


def write_triples(path: Path) -> Path:
    lines = []
    for i, topic in enumerate(TOPICS):
        other = TOPICS[(i + 3) % len(TOPICS)]
        for j in range(3):
            lines.append(f"about {topic}\t{topic} {topic} facts number {j}\t{other} trivia {j}")
    path.write_text("\n".join(lines) + "\n")
    return path


def config(tmp_path: Path, model_dir: Path, **extra) -> LiteTrainConfig:
    values = dict(
        out=tmp_path / "out",
        backbone=str(model_dir),
        dim=8,
        q_len=8,
        d_len=16,
        data=[TriplesSource(path=write_triples(tmp_path / "triples.tsv"))],
        negatives=2,
        batch_size=4,
        dev_fraction=0.25,
        max_steps=30,
        learning_rate=5e-3,
        warmup_steps=2,
        eval_every=10,
        patience=None,
        device="cpu",
    )
    values.update(extra)
    return LiteTrainConfig(**values)


def test_training_lowers_the_loss(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = config(tmp_path, tiny_model_dir, dev_fraction=0.0)
    examples = load_examples(cfg.data)
    job = LiteTraining(cfg)
    job.prepare_cache(examples, show_progress=False)
    fixed = next(batches(examples, 8, 2, seed=1, with_teacher=False))
    with torch.no_grad():
        before = float(job.loss(fixed))
    result = train_lite(cfg, show_progress=False)
    trained = LateInteractionModel.load(cfg.out / "best", device="cpu")
    job.model = trained
    with torch.no_grad():
        after = float(job.loss(fixed))
    assert after < 0.8 * before, (before, after)
    assert result.steps == 30 and (cfg.out / "summary.json").is_file()


def test_resume_continues_from_the_checkpoint(tmp_path: Path, tiny_model_dir: Path) -> None:
    train_lite(config(tmp_path, tiny_model_dir, max_steps=10), show_progress=False)
    result = train_lite(config(tmp_path, tiny_model_dir, max_steps=20), show_progress=False)
    assert result.steps == 20
    assert [h["step"] for h in result.history] == [0.0, 10.0, 20.0]


def test_a_cache_in_memory_trains_the_same_model_as_the_cache_file(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """A bench hands train_lite the token cache it loaded instead of a second copy read from
    ``config.cache``: same model, and the states training adds land in that cache."""
    from_file = config(tmp_path, tiny_model_dir, max_steps=10, cache=tmp_path / "cache.npz")
    train_lite(from_file, show_progress=False)
    in_memory = TokenCache.load(tmp_path / "cache.npz")
    cached = len(in_memory)
    again = config(tmp_path, tiny_model_dir, max_steps=10, out=tmp_path / "again")
    train_lite(again, show_progress=False, token_cache=in_memory)
    assert len(in_memory) == cached
    first = LateInteractionModel.load(from_file.out / "best", device="cpu").state_dict()
    second = LateInteractionModel.load(again.out / "best", device="cpu").state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    grown = TokenCache()
    train_lite(
        config(tmp_path, tiny_model_dir, max_steps=1, out=tmp_path / "new"),
        show_progress=False,
        token_cache=grown,
    )
    assert len(grown) == cached


def test_fine_tuned_layers_round_trip(tmp_path: Path, tiny_model_dir: Path) -> None:
    cfg = config(
        tmp_path, tiny_model_dir, trainable_layers=1, max_steps=5, dev_fraction=0.0, doc_windows=3
    )
    train_lite(cfg, show_progress=False)
    loaded = LateInteractionModel.load(cfg.out / "best", device="cpu")
    assert loaded.config.doc_windows == 3
    scores = LateInteractionReranker(loaded).score("about cats", ["cats cats", "rain"])
    assert np.all(np.isfinite(scores))
    state = loaded.trainable_backbone_state()
    assert state and all(".layer.1." in k for k in state)
    # The fine-tuned layer really moved away from the base model's weights.
    base = LateInteractionModel(
        loaded.config.__class__(backbone=str(tiny_model_dir)), device="cpu"
    ).encoder.backbone.model.state_dict()
    assert any(not torch.equal(v, base[k]) for k, v in state.items())


def test_qrels_examples_skip_known_positives() -> None:
    examples = examples_from_qrels(
        {"q": "query"},
        {"q": {"p1": 2, "p2": 1, "n1": 0}},
        {"p1": "pos one", "p2": "pos two", "n1": "neg", "n2": "neg two"},
        {"q": {"p1": 3.0, "n1": 2.0, "p2": 1.5, "n2": 1.0}},
        teacher={"q": {"p1": 9.0, "n1": 1.0}},
    )
    assert [e.positive for e in examples] == ["pos one", "pos two"]
    assert examples[0].negatives == ["neg", "neg two"]
    assert examples[0].teacher_positive == 9.0 and examples[0].teacher_negatives == [1.0, 1.0]
    train, dev = split_by_query(examples, 0.5, seed=0)
    assert {e.query_id for e in train}.isdisjoint({e.query_id for e in dev})


def test_distillation_needs_teacher_scores(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(ValueError, match="teacher"):
        train_lite(config(tmp_path, tiny_model_dir, loss="kl"), show_progress=False)


def test_batches_put_the_positive_first(tmp_path: Path) -> None:
    examples = load_examples([TriplesSource(path=write_triples(tmp_path / "t.tsv"))])
    batch: Batch = next(batches(examples, 4, 2, seed=0, with_teacher=False))
    assert len(batch.queries) == 4 and len(batch.documents) == 12
    topic = batch.queries[0].split()[-1]
    assert batch.documents[0].startswith(topic)


def test_bad_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LiteTrainConfig(out=tmp_path, data=[])
    with pytest.raises(ValueError):
        QrelsSource.model_validate(
            {
                "queries": tmp_path,
                "qrels": tmp_path,
                "corpus": tmp_path,
                "negatives_run": tmp_path,
                "unknown_field": 1,
            }
        )


def test_negatives_mined_from_an_index_skip_positives(
    tmp_path: Path, tiny_corpus: Path, tiny_encoder
) -> None:
    from index.builder import IndexBuildConfig, build_index
    from training.examples import load_qrels_examples

    build_index(
        IndexBuildConfig(corpus=tiny_corpus, out=tmp_path / "index", show_progress=False),
        encoder=tiny_encoder,
    )
    queries = tmp_path / "q.tsv"
    queries.write_text("q1\tCats are small domesticated felines.\n")
    qrels = tmp_path / "qrels.trec"
    qrels.write_text("q1 0 d1 1\n")
    examples = load_qrels_examples(
        queries, qrels, tiny_corpus, None, negatives_index=tmp_path / "index", negative_depth=4
    )
    assert len(examples) == 1
    assert examples[0].positive.startswith("Cats Cats")
    assert len(examples[0].negatives) == 3
    assert all("felines" not in n for n in examples[0].negatives)


def test_laurel_on_a_frozen_backbone_trains_and_round_trips(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    cfg = config(
        tmp_path, tiny_model_dir, laurel=["rw", "lr"], laurel_rank=4, max_steps=5, dev_fraction=0.0
    )
    train_lite(cfg, show_progress=False)
    loaded = LateInteractionModel.load(cfg.out / "best", device="cpu")
    state = loaded.trainable_backbone_state()
    assert state and all(".laurel." in k for k in state)
    assert loaded.config.laurel is not None and loaded.config.laurel.variants == ("rw", "lr")
    # Training moved LAuReL off the identity (the zero-initialised up-projection is non-zero).
    assert any(float(v.abs().sum()) > 0 for k, v in state.items() if k.endswith("up.weight"))


FILLER = "the report below was filed by the committee after a long meeting in the hall today"


def write_late_answer_triples(path: Path) -> Path:
    """Triples whose passages share their first 20 tokens: what tells the positive from the
    negative lies past a 16-token first window."""
    lines = []
    for i, topic in enumerate(TOPICS):
        other = TOPICS[(i + 3) % len(TOPICS)]
        for j in range(3):
            lines.append(
                f"about {topic}\t{FILLER} {topic} {topic} facts {j}\t{FILLER} {other} trivia {j}"
            )
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("cached", [True, False])
def test_training_on_windows_learns_what_lies_past_the_first_window(
    tmp_path: Path, tiny_model_dir: Path, cached: bool
) -> None:
    data = [TriplesSource(path=write_late_answer_triples(tmp_path / "late.tsv"))]
    # trainable_layers=1 trains without a token cache (windows encoded with gradients)
    extra = {"max_steps": 80, "trainable_layers": 0 if cached else 1}
    windowed = config(
        tmp_path, tiny_model_dir, data=data, dev_fraction=0.0, doc_windows=3, train_windows=3
    ).model_copy(update=extra)
    examples = load_examples(windowed.data)
    fixed = next(batches(examples, 8, 2, seed=1, with_teacher=False))
    n = len(fixed.documents)

    first = LiteTraining(windowed.model_copy(update={"train_windows": 1}))
    first.prepare_cache(examples, show_progress=False)
    # every passage has the same first window: first-window training cannot tell them apart
    with torch.no_grad():
        assert float(first.loss(fixed)) == pytest.approx(np.log(n), abs=1e-4)

    job = LiteTraining(windowed)
    job.prepare_cache(examples, show_progress=False)
    assert (job.cache is not None) == cached
    with torch.no_grad():
        before = float(job.loss(fixed))
    train_lite(windowed, show_progress=False)
    job.model = LateInteractionModel.load(windowed.out / "best", device="cpu")
    with torch.no_grad():
        after = float(job.loss(fixed))
    assert after < 0.8 * before, (before, after)


def test_training_cannot_read_more_windows_than_the_model_will(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train_windows=4 exceeds doc_windows=2"):
        LiteTrainConfig(
            out=tmp_path,
            data=[TriplesSource(path=write_triples(tmp_path / "t.tsv"))],
            doc_windows=2,
            train_windows=4,
        )


def frozen_tiny_model(tiny_model_dir: Path) -> LateInteractionModel:
    """A 16-token-window re-ranker over the tiny backbone, as training caches it."""
    config = LateInteractionConfig(backbone=str(tiny_model_dir), dim=8, q_len=8, d_len=16)
    return LateInteractionModel(config, device="cpu").eval()


def test_cached_windows_are_the_windows_the_model_stores(tiny_model_dir: Path) -> None:
    """Training's cached window states, projected, equal what the token store keeps."""
    model = frozen_tiny_model(tiny_model_dir)
    texts = [f"{FILLER} {FILLER} cats", "short text"]
    cache = TokenCache()
    cache.ensure_windows(model, texts, 8, show_progress=False)
    cache.ensure_windows(model, texts, 8, show_progress=False)
    assert len(cache) == 2
    raw = cache.window_batch(texts, model, 8)
    with torch.no_grad():
        projected = model.project(raw.tokens, raw.mask)
    stored = model.document_matrices(texts)
    for doc, matrix in enumerate(stored):
        rows = projected[raw.owners == doc][raw.mask[raw.owners == doc]]
        np.testing.assert_allclose(rows, matrix.astype(np.float32), atol=2e-3)
    assert raw.owners.tolist().count(0) > 1


def test_one_cached_window_is_the_cached_first_window(tiny_model_dir: Path) -> None:
    model = frozen_tiny_model(tiny_model_dir)
    texts = [f"{FILLER} {FILLER} cats", "short text"]
    cache = TokenCache()
    cache.ensure(model, texts, 16, show_progress=False)
    first = cache.window_batch(texts, model, 1)
    raw, mask = cache.batch(texts, 16)
    assert first.owners.tolist() == [0, 1]
    assert torch.equal(first.tokens, raw) and torch.equal(first.mask, mask)
    cache.ensure_windows(model, texts, 1, show_progress=False)
    assert len(cache) == 2


def test_the_same_texts_form_the_same_batches_in_any_order(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cached state's fp16 bits depend slightly on the texts that share its batch, and
    training hands texts over as a set (whose order changes between processes): the cache
    must batch the same texts the same way whatever order they come in."""
    model = frozen_tiny_model(tiny_model_dir)
    seen: list[list[list[int]]] = []
    forward = model.encoder.forward_tokens

    def recording(batch: dict[str, torch.Tensor]):
        seen.append(batch["input_ids"].tolist())
        return forward(batch)

    monkeypatch.setattr(model.encoder, "forward_tokens", recording)
    texts = [f"{FILLER} {topic} " * (i % 3 + 1) for i, topic in enumerate(TOPICS)]
    batches_by_order, states_by_order = [], []
    for order in (texts, texts[::-1]):
        seen.clear()
        cache = TokenCache()
        cache.ensure(model, order, 16, batch_size=3, show_progress=False)
        cache.ensure_windows(model, order, 4, batch_size=3, show_progress=False)
        batches_by_order.append(list(seen))
        states_by_order.append(cache._states)
    first, second = batches_by_order
    assert len(first) > 2 and first == second
    assert all(np.array_equal(v, states_by_order[1][k]) for k, v in states_by_order[0].items())
