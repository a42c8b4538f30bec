"""SoftSRV training, generation, the consistency filter and augmentation, end to end on a
tiny random Llama (tests/models/test_softsrv_models.py) and a tiny random BERT as context
encoder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from index.errors import MalformedInputError
from loupe.cli import app
from models.causal_lm import load_causal_lm
from models.encoder import TextEncoder
from tests.models.test_softsrv_models import build_tiny_lm
from tests.training.test_lite_job import write_triples
from training.batches import split_training_data
from training.consistency import bm25_corpus_first_stage, consistency_ranks, faiss_first_stage
from training.dual_config import DualTrainConfig
from training.run_config import SyntheticSource, TriplesSource
from training.softsrv_job import load_softsrv_config, train_softsrv
from training.synthetic_pairs import qrels_path, read_pairs

DOCS = {
    "d1": "Cats are small pets.",
    "d2": "The stock market fell on monday.",
    "d3": "Dogs are loyal pets.",
    "d4": "Plants make sugar from light energy.",
}
QUERIES = {"d1": "what are cats", "d2": "what fell on monday", "d3": "why are dogs loyal"}


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-llama"))


def write_corpus(path: Path) -> Path:
    path.write_text("".join(json.dumps({"_id": d, "text": t}) + "\n" for d, t in DOCS.items()))
    return path


def write_pairs(path: Path) -> Path:
    rows = [{"source": DOCS[d], "target": q} for d, q in QUERIES.items()] * 4
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def softsrv_config(tmp_path: Path, lm_dir: Path, context: Path, **extra: object):
    values: dict[str, object] = dict(
        out=tmp_path / "prompt",
        data=[{"kind": "pairs", "path": str(write_pairs(tmp_path / "pairs.jsonl"))}],
        lm=str(lm_dir),
        context_encoder=str(context),
        prompt="mixture",
        prompt_length=3,
        mixture_size=2,
        batch_size=4,
        max_steps=20,
        eval_every=10,
        dev_fraction=0.25,
        learning_rate=5e-2,
        warmup_steps=2,
        device="cpu",
    )
    values.update(extra)
    return load_softsrv_config(None, values)


def test_training_keeps_the_lm_frozen_and_checkpoints_the_prompt_alone(
    tmp_path: Path, tiny_lm_dir: Path, tiny_model_dir: Path
) -> None:
    cfg = softsrv_config(tmp_path, tiny_lm_dir, tiny_model_dir)
    lm = load_causal_lm(str(tiny_lm_dir), device="cpu")
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    result = train_softsrv(cfg, show_progress=False, lm=lm)
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())
    assert result.steps == 20 and len(result.history) == 3
    state = torch.load(cfg.out / "checkpoint.pt", weights_only=False)["module"]
    assert sorted(state) == ["prompt.gate.bias", "prompt.gate.weight", "prompt.prompts"]
    assert sorted(p.name for p in (cfg.out / "best").iterdir()) == [
        "config.json",
        "prompt.safetensors",
    ]
    summary = json.loads((cfg.out / "summary.json").read_text())
    assert summary["trainable_parameters"] == 2 * 3 * 32 + 32 * 2 + 2  # prompts + gate (z: 32-d)
    assert summary["best_dev_loss"] <= result.history[0]["dev_loss"]


def test_cli_train_then_generate_resumes_reproducibly_and_filters(
    tmp_path: Path, tiny_lm_dir: Path, tiny_model_dir: Path
) -> None:
    config_file = tmp_path / "softsrv.toml"
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    config_file.write_text(
        f'out = "{tmp_path / "prompt"}"\nlm = "{tiny_lm_dir}"\n'
        f'context_encoder = "{tiny_model_dir}"\nprompt_length = 3\nhidden = 8\n'
        f'batch_size = 4\neval_every = 5\nwarmup_steps = 1\ndevice = "cpu"\n'
        f'[[data]]\nkind = "pairs"\npath = "{pairs}"\n'
    )
    runner = CliRunner()
    trained = runner.invoke(
        app, ["train", "softsrv", "--config", str(config_file), "--max-steps", "5", "-q"]
    )
    assert trained.exit_code == 0, trained.output
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    common = ["generate", "--softsrv", str(tmp_path / "prompt" / "best"), "--corpus", str(corpus)]
    common += ["--num-queries", "2", "--max-new-tokens", "5", "--batch-size", "2", "-q"]
    whole = runner.invoke(app, [*common, "--out", str(tmp_path / "a.jsonl")])
    assert whole.exit_code == 0, whole.output
    part = runner.invoke(app, [*common, "--out", str(tmp_path / "b.jsonl"), "--limit", "2"])
    assert part.exit_code == 0, part.output
    with (tmp_path / "b.jsonl").open("a") as handle:
        handle.write('{"query_id": "syn-d3-0", "que')  # a run stopped mid-line
    rest = runner.invoke(app, [*common, "--out", str(tmp_path / "b.jsonl")])
    assert rest.exit_code == 0 and "(2 already done)" in rest.output, rest.output
    a, b = read_pairs(tmp_path / "a.jsonl"), read_pairs(tmp_path / "b.jsonl")
    assert a == b and len(a) == 8
    assert all(len(p.query.split()) <= 5 for p in a)
    assert qrels_path(tmp_path / "a.jsonl").read_text().count("\n") == 8
    other_seed = runner.invoke(app, [*common, "--out", str(tmp_path / "b.jsonl"), "--seed", "1"])
    assert other_seed.exit_code == 2 and "other settings" in other_seed.output
    filtered = runner.invoke(
        app, [*common, "--out", str(tmp_path / "c.jsonl"), "--filter-top-k", "1"]
    )
    assert filtered.exit_code == 0, filtered.output
    rows = read_pairs(tmp_path / "c.jsonl", include_dropped=True)
    assert all(r.kept == (r.first_stage_rank == 1) for r in rows if r.query)
    bm25 = [*common, "--out", str(tmp_path / "d.jsonl"), "--filter-top-k", "1"]
    by_bm25 = runner.invoke(app, [*bm25, "--filter-first-stage", "bm25"])
    assert by_bm25.exit_code == 0, by_bm25.output
    rows = read_pairs(tmp_path / "d.jsonl", include_dropped=True)
    assert len(rows) == 8 and all(r.kept == (r.first_stage_rank == 1) for r in rows)
    unknown = runner.invoke(app, [*bm25, "--filter-first-stage", "splade"])
    assert unknown.exit_code == 2 and "unknown first stage" in unknown.output, unknown.output


def test_hard_prompt_baseline_from_the_cli(tmp_path: Path, tiny_lm_dir: Path) -> None:
    shots = tmp_path / "shots.jsonl"
    shots.write_text('{"passage": "Cats are small pets.", "query": "what are cats"}\n')
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    out = tmp_path / "hard.jsonl"
    result = CliRunner().invoke(
        app,
        [
            *("generate", "--hard-prompt", str(shots), "--lm", str(tiny_lm_dir)),
            *("--corpus", str(corpus), "--out", str(out)),
            *("--max-new-tokens", "3", "--temperature", "0", "-q"),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = read_pairs(out, include_dropped=True)
    assert [r.doc_id for r in rows] == list(DOCS)
    assert {r.generator for r in rows} == {"hard-prompt"}
    neither = CliRunner().invoke(app, ["generate", "--corpus", str(corpus), "--out", str(out)])
    assert neither.exit_code == 2 and "exactly one of" in neither.output


def test_consistency_filter_keeps_a_query_only_when_its_passage_ranks_in_top_k(
    tiny_encoder: TextEncoder,
) -> None:
    ids = list(DOCS)
    vectors = tiny_encoder.encode(list(DOCS.values()))
    search = faiss_first_stage(tiny_encoder, ids, vectors)
    # a passage's own text ranks that passage first (exact cosine 1)
    ranks = consistency_ranks(search, [DOCS["d1"], DOCS["d2"]], ["d1", "d1"], k=1)
    assert ranks == [1, None]
    deep = consistency_ranks(search, [DOCS["d2"]], ["d1"], k=4)
    assert deep[0] is not None and 2 <= deep[0] <= 4
    with pytest.raises(ValueError, match="at least 1"):
        consistency_ranks(search, ["x"], ["d1"], k=0)


def test_bm25_consistency_filter_over_a_corpus_file(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in DOCS.items()))
    search = bm25_corpus_first_stage(corpus)
    queries = [QUERIES["d1"], QUERIES["d2"], "pets", "quantum chromodynamics"]
    ranks = consistency_ranks(search, queries, ["d1", "d2", "d4", "d1"], k=2)
    # a shared stemmed term finds the passage; no shared term finds nothing
    assert ranks[:2] == [1, 1] and ranks[2:] == [None, None]


def write_synthetic(path: Path, count: int) -> Path:
    rows: list[dict[str, object]] = [
        {"query_id": f"syn-{i}", "query": f"synthetic {i}", "doc_id": "d4", "generator": "t"}
        for i in range(count)
    ]
    rows.append({"query_id": "syn-x", "query": "dropped", "doc_id": "d1", "kept": False})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(("ratio", "expected"), [(0.0, 0), (0.5, None), (100.0, 40)])
def test_augmentation_mixes_synthetic_pairs_into_training_only(
    tmp_path: Path, tiny_model_dir: Path, ratio: float, expected: int | None
) -> None:
    synthetic = SyntheticSource(
        pairs=write_synthetic(tmp_path / "syn.jsonl", 40),
        corpus=write_corpus(tmp_path / "corpus.jsonl"),
        ratio=ratio,
        negatives_per_query=2,
    )
    cfg = DualTrainConfig(
        out=tmp_path / "out",
        model=str(tiny_model_dir),
        data=[TriplesSource(path=write_triples(tmp_path / "t.tsv")), synthetic],
        dev_fraction=0.25,
        device="cpu",
    )
    everything, train, dev, _ = split_training_data(cfg)
    synthetic_train = [e for e in train if e.query.startswith("synthetic")]
    real_train = len(train) - len(synthetic_train)
    want = round(real_train * ratio) if expected is None else expected
    assert len(synthetic_train) == want
    assert not any(e.query.startswith(("synthetic", "dropped")) for e in dev)
    assert len(everything) == len(train) + len(dev)
    for example in synthetic_train:
        assert example.positive == DOCS["d4"]
        assert len(example.negatives) == 2 and DOCS["d4"] not in example.negatives


def test_augmentation_source_in_a_config_file_and_bad_pair_lines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query_id": "a", "query": "q", "doc_id": "d1"}\n{"query_id": "b"}\n')
    with pytest.raises(MalformedInputError, match=r"bad.jsonl.*2"):
        read_pairs(bad)
    with pytest.raises(ValueError, match="at most one of"):
        SyntheticSource(
            pairs=bad, corpus=bad, negatives_index=tmp_path, negatives_run=tmp_path / "r"
        )
    assert np.isclose(SyntheticSource(pairs=bad, corpus=bad).ratio, 1.0)
