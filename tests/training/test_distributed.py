"""Data-parallel training: two gloo ranks on the CPU take the same steps as one process with
twice the accumulation, stay in sync, and stop early together."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from training.distributed import (
    World,
    average_gradients,
    init_from_environment,
    main_decides,
    world_from_environment,
)
from training.trainer import Trainer, TrainerConfig, TrainResult

STEPS = 20
EVAL_EVERY = 2
DEV_SCORES = [0.1, 0.2, 0.3, 0.25, 0.4]
"""Dev metric by evaluation: the fourth (step 6) is no gain, so patience 1 stops at step 6."""


def _toy_batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The same endless stream on every rank: a fixed list of regression batches, cycled."""
    generator = torch.Generator().manual_seed(0)
    target = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    fixed = []
    for _ in range(16):
        x = torch.randn(8, 4, generator=generator)
        fixed.append((x, x @ target + 0.1 * torch.randn(8, 1, generator=generator)))
    while True:
        yield from fixed


def _train_toy(
    out: Path, grad_accumulation: int, init_seed: int, world: World
) -> tuple[nn.Linear, TrainResult]:
    torch.manual_seed(init_seed)  # ranks start from different heads: rank 0's must win
    model = nn.Linear(4, 1)
    calls = iter(DEV_SCORES)

    def loss_fn(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return (model(x) - y).pow(2).mean()

    config = TrainerConfig(
        out=out,
        max_steps=STEPS,
        learning_rate=0.05,
        warmup_steps=2,
        grad_accumulation=grad_accumulation,
        max_grad_norm=0.5,  # small enough to clip: clipping must see the averaged gradient
        eval_every=EVAL_EVERY,
        checkpoint_every=4,
        patience=1,
        show_progress=False,
    )
    result = Trainer(
        config,
        model,
        loss_fn,
        _toy_batches(),
        evaluate=lambda: {"score": next(calls)},
        metric="score",
        world=world,
    ).train()
    return model, result


def _rank(rank: int, size: int, port: int, out: str, model_dir: str, triples: str) -> None:
    """One rank of both two-rank runs (one spawn: starting processes is most of the time):
    the toy regression, then the dual encoder with gathered negatives."""
    from training.dual_job import train_dual
    from training.lite_job import train_lite

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(size),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    world = init_from_environment()
    assert world == World(rank=rank, size=size, local_rank=rank)
    model, result = _train_toy(Path(out) / "run", 1, init_seed=100 + rank, world=world)
    torch.save(
        {"state": model.state_dict(), "steps": result.steps, "history": result.history},
        Path(out) / f"rank{rank}.pt",
    )
    config = _dual_config(Path(out) / "dual", Path(model_dir), Path(triples), batch_size=2)
    train_dual(config, show_progress=False)
    for windows in (1, 3):
        folder = Path(out) / f"lite-{windows}"
        lite = _lite_config(folder, Path(model_dir), Path(triples), 2, windows)
        train_lite(lite, show_progress=False)
    encoded = _cache_texts(Path(out) / f"cache-rank{rank}.npz", Path(model_dir), world)
    torch.save(encoded, Path(out) / f"cache-rank{rank}-encoded.pt")


CACHE_TEXTS = [f"passage number {i} " + "word " * (i % 7) for i in range(21)]


def _cache_texts(path: Path, model_dir: Path, world: World) -> list[str]:
    """Cache :data:`CACHE_TEXTS` (cut at 16 tokens, and as 4-token windows) in batches of 2
    on this world's ranks, save the cache, and return the texts this rank encoded."""
    from models.late_interaction import TokenMatrices
    from training.lite_job import LiteTraining
    from training.token_cache import TokenCache

    model = LiteTraining(_lite_config(path.parent, model_dir, path, 2, 3)).model
    encoded: list[str] = []
    windowed = model.windowed_outputs

    def counting(texts: Any, *args: Any, **kwargs: Any) -> Any:
        encoded.extend(texts)
        return windowed(texts, *args, **kwargs)

    model.windowed_outputs = counting  # type: ignore[method-assign]
    cache = TokenCache()
    cache.ensure_windows(model, CACHE_TEXTS, 3, batch_size=1, show_progress=False, world=world)
    model.windowed_outputs = windowed  # type: ignore[method-assign]
    backbone_tokens = model.backbone_tokens

    def counting_tokens(texts: Sequence[str], max_length: int) -> TokenMatrices:
        encoded.extend(texts)
        return backbone_tokens(texts, max_length)

    model.backbone_tokens = counting_tokens  # type: ignore[method-assign]
    cache.ensure(model, CACHE_TEXTS, 16, batch_size=2, show_progress=False, world=world)
    cache.save(path)
    return encoded


def _lite_config(
    out: Path, model_dir: Path, triples: Path, batch_size: int, train_windows: int
) -> Any:
    """A tiny MaxSim re-ranker on the frozen tiny BERT; with ``train_windows`` above 1 its
    4-token windows make every passage two or three windows long."""
    from models.lite import ScorerConfig
    from training.lite_config import LiteTrainConfig
    from training.run_config import TriplesSource

    d_len = 4 if train_windows > 1 else 16
    return LiteTrainConfig(
        out=out,
        backbone=str(model_dir),
        dim=8,
        q_len=8,
        d_len=d_len,
        doc_windows=train_windows,
        train_windows=train_windows,
        scorer=ScorerConfig(kind="maxsim", q_len=8, d_len=d_len),
        data=[TriplesSource(path=triples)],
        negatives=1,
        batch_size=batch_size,
        dev_fraction=0.0,
        max_steps=2,
        learning_rate=5e-2,
        warmup_steps=0,
        eval_every=0,
        patience=None,
        device="cpu",
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_ranks(rank_function: Callable[..., None], args: tuple[Any, ...], ranks: int = 2) -> None:
    """Run ``rank_function(rank, *args)`` in ``ranks`` spawned processes; fail if one fails
    or if they are not done within two minutes (a rank waiting at a collective the others
    never reach)."""
    ranks_running = mp.spawn(rank_function, args=args, nprocs=ranks, join=False)
    deadline = time.monotonic() + 120
    while not ranks_running.join(timeout=1):  # raises if a rank failed
        if time.monotonic() > deadline:
            for process in ranks_running.processes:
                process.kill()
            pytest.fail("the ranks hung: one waits at a collective the other never reaches")


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """``(out, model_dir, triples)`` of both runs on two gloo ranks: a tiny BERT without
    dropout (so that the ranks' own random draws do not enter) and the triples it trains on."""
    import json

    from tests.conftest import build_tiny_bert
    from tests.training.test_lite_job import write_triples

    root = tmp_path_factory.mktemp("two-ranks")
    model_dir = build_tiny_bert(root / "tiny")
    settings = json.loads((model_dir / "config.json").read_text())
    settings.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (model_dir / "config.json").write_text(json.dumps(settings))
    triples = write_triples(root / "triples.tsv")
    out = root / "ranks"
    out.mkdir()
    run_ranks(_rank, (2, _free_port(), str(out), str(model_dir), str(triples)))
    return out, model_dir, triples


def test_two_ranks_take_the_steps_of_one_process_with_twice_the_accumulation(
    two_ranks: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    out = two_ranks[0]
    ranks = [torch.load(out / f"rank{r}.pt") for r in range(2)]
    single, single_result = _train_toy(tmp_path / "single", 2, init_seed=100, world=World())

    for name, value in single.state_dict().items():
        assert torch.equal(ranks[0]["state"][name], ranks[1]["state"][name])  # in sync
        torch.testing.assert_close(ranks[0]["state"][name], value, rtol=1e-5, atol=1e-6)
    # rank 0 decided to stop at step 6 and rank 1 followed; only rank 0 evaluated
    assert single_result.steps == ranks[0]["steps"] == ranks[1]["steps"] == 6
    assert [h["score"] for h in ranks[0]["history"]] == DEV_SCORES[:4]
    assert ranks[1]["history"] == ranks[0]["history"]  # rank 1 returns rank 0's result
    run = out / "run"
    assert (run / "checkpoint.pt").is_file()
    assert torch.load(run / "checkpoint.pt", weights_only=False)["step"] == 6
    # the training moved away from both ranks' initial heads
    torch.manual_seed(100)
    assert not torch.equal(nn.Linear(4, 1).weight, ranks[0]["state"]["weight"])


def test_a_world_of_one_changes_nothing() -> None:
    param = nn.Parameter(torch.ones(3))
    param.grad = torch.full((3,), 2.0)
    assert average_gradients([param], 0.5, World(), torch.device("cpu")) == 0.5
    assert torch.equal(param.grad, torch.full((3,), 2.0))
    assert main_decides(True, World(), torch.device("cpu")) is True


@pytest.mark.parametrize(
    "environ",
    [{"WORLD_SIZE": "2", "RANK": "2"}, {"WORLD_SIZE": "two"}, {"WORLD_SIZE": "0"}],
)
def test_a_broken_torchrun_environment_is_refused(environ: dict[str, str]) -> None:
    with pytest.raises(ValueError, match=r"RANK|WORLD_SIZE|torchrun"):
        world_from_environment(environ)


def _dual_config(out: Path, model_dir: Path, triples: Path, batch_size: int) -> Any:
    from training.dual_config import DualTrainConfig
    from training.run_config import TriplesSource

    return DualTrainConfig(
        out=out,
        model=str(model_dir),
        max_length=32,
        data=[TriplesSource(path=triples)],
        negatives=1,
        batch_size=batch_size,
        dev_fraction=0.0,
        max_steps=2,
        learning_rate=1e-3,
        warmup_steps=0,
        eval_every=0,
        patience=None,
        device="cpu",
    )


def test_gathered_negatives_make_two_ranks_one_process_with_twice_the_batch(
    two_ranks: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """With ``gather_negatives``, each rank's queries are scored against both ranks'
    passages, so two ranks of batch 2 train the dual encoder as one process of batch 4 does.
    """
    from safetensors.torch import load_file

    from training.dual_job import train_dual

    out, model_dir, triples = two_ranks
    one = _dual_config(tmp_path / "one", model_dir, triples, batch_size=4)
    train_dual(one, show_progress=False)
    trained = {
        name: load_file(folder / "best" / "model.safetensors")
        for name, folder in (("ranks", out / "dual"), ("one", tmp_path / "one"))
    }
    start = load_file(model_dir / "model.safetensors")
    moved = 0
    for key, value in trained["one"].items():
        torch.testing.assert_close(trained["ranks"][key], value, rtol=1e-4, atol=1e-5)
        moved += int(not torch.equal(value, start[key]))
    assert moved > 0


@pytest.mark.parametrize("windows", [1, 3])
def test_gathered_negatives_make_two_lite_ranks_one_process_with_twice_the_batch(
    two_ranks: tuple[Path, Path, Path], tmp_path: Path, windows: int
) -> None:
    """The LITE job gathers every rank's passage matrices (their lengths padded, masks
    keeping scores unchanged; read as windows too), so two ranks of batch 2 train as one
    process of batch 4."""
    from safetensors.torch import load_file

    from training.lite_job import train_lite

    out, model_dir, triples = two_ranks
    one = _lite_config(tmp_path / "one", model_dir, triples, 4, windows)
    train_lite(one, show_progress=False)
    trained = load_file(tmp_path / "one" / "best" / "model.safetensors")
    ranks = load_file(out / f"lite-{windows}" / "best" / "model.safetensors")
    for key, value in trained.items():
        torch.testing.assert_close(ranks[key], value, rtol=1e-4, atol=1e-5)


def test_ranks_share_the_token_cache_and_each_ends_with_all_of_it(
    two_ranks: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """Each rank encodes every other batch (or chunk of windows) of the texts to cache; the
    states are exchanged, and both ranks hold every state, bit for bit what one process
    computes alone."""
    import numpy as np

    from training.token_cache import TokenCache

    out, model_dir, _ = two_ranks
    encoded = [torch.load(out / f"cache-rank{r}-encoded.pt") for r in range(2)]
    assert encoded[0] and encoded[1]
    assert len(encoded[0]) + len(encoded[1]) == 2 * len(CACHE_TEXTS)  # windows, then cut
    alone = _cache_texts(tmp_path / "cache.npz", model_dir, World())
    assert sorted(alone) == sorted(encoded[0] + encoded[1])
    single = TokenCache.load(tmp_path / "cache.npz")
    assert len(single) == 2 * len(CACHE_TEXTS)
    for r in range(2):
        shared = TokenCache.load(out / f"cache-rank{r}.npz")
        assert set(shared._states) == set(single._states)
        for key, states in single._states.items():
            np.testing.assert_array_equal(shared._states[key], states)
