"""SoftSRV prompts and the prompted LM, on a tiny randomly initialised Llama built here."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.causal_lm import CausalLMNotFoundError, load_causal_lm
from models.prompted_lm import PromptedLM, SamplingConfig
from models.softsrv import (
    PROMPT_KINDS,
    SoftPromptConfig,
    SoftSRVSpec,
    build_soft_prompt,
    load_soft_prompt,
    save_soft_prompt,
)

WORDS = [
    "cats",
    "dogs",
    "are",
    "small",
    "loyal",
    "pets",
    "the",
    "stock",
    "market",
    "fell",
    "on",
    "monday",
    "light",
    "energy",
    "what",
    "why",
    "do",
    "how",
    "is",
    "a",
    "of",
    "and",
    "plants",
    "make",
    "sugar",
    "from",
]


def build_tiny_lm(folder: Path, seed: int = 0) -> Path:
    """Save a 2-layer random Llama and a word-level tokenizer over ``WORDS``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<bos>", "<eos>", "<unk>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        initializer_range=0.3,  # larger than usual, so that the prompt can move the output
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture()
def prompted(tiny_lm_dir: Path) -> PromptedLM:
    return PromptedLM(load_causal_lm(str(tiny_lm_dir), device="cpu"))


def prompt_config(kind: str, width: int = 32) -> SoftPromptConfig:
    return SoftPromptConfig(
        kind=kind,  # type: ignore[arg-type]
        length=3,
        context_dim=6,
        width=width,
        mixture_size=4,
        hidden=16,
    )


@pytest.mark.parametrize("kind", PROMPT_KINDS)
def test_prompt_shapes_and_context_dependence(kind: str) -> None:
    torch.manual_seed(0)
    module = build_soft_prompt(prompt_config(kind))
    z = torch.randn(5, 6)
    assert module(z).shape == (5, 3, 32)
    # every variant starts as one prompt for all z; contextual ones move apart after a step
    out = module(z)
    assert torch.allclose(out[0], out[1])
    optimizer = torch.optim.SGD(module.parameters(), lr=1.0)
    (module(z) * torch.randn(5, 3, 32)).sum().backward()
    optimizer.step()
    out = module(z)
    assert torch.allclose(out[0], out[1]) == (kind == "noncontextual")
    with pytest.raises(ValueError, match="context must be"):
        module(torch.randn(5, 7))


def test_bad_prompt_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="prompt kind"):
        SoftPromptConfig(kind="lstm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="initial prompts"):
        build_soft_prompt(prompt_config("mixture"), torch.zeros(1, 3, 32))


def test_lm_is_frozen_gets_no_gradient_and_does_not_change(prompted: PromptedLM) -> None:
    torch.manual_seed(0)
    module = build_soft_prompt(prompt_config("mlp"), prompted.token_prompts(1, 3))
    before = {k: v.clone() for k, v in prompted.model.state_dict().items()}
    assert not any(p.requires_grad for p in prompted.model.parameters())
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-2)
    z = torch.randn(4, 6)
    targets = prompted.targets(["cats are pets", "what fell", "dogs", "light"], 8)
    for _ in range(3):
        loss = prompted.loss(module(z), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert all(p.grad is None for p in prompted.model.parameters())
    after = prompted.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not prompted.model.training


def test_loss_scores_only_query_tokens_and_eos(prompted: PromptedLM) -> None:
    targets = prompted.targets(["cats are small pets", "what"], max_tokens=3)
    eos = prompted.tokenizer.eos_token_id
    assert targets.ids.shape == (2, 4)  # 3 tokens + EOS; the short one padded
    assert targets.mask.sum(1).tolist() == [4, 2]
    assert targets.ids[0, 3] == eos and targets.ids[1, 1] == eos
    nll = prompted.token_nll(torch.zeros(2, 3, 32), targets)
    assert nll.shape == (2, 4)
    assert (nll[~targets.mask] == 0).all() and (nll[targets.mask] > 0).all()


@pytest.mark.parametrize("kind", PROMPT_KINDS)
def test_a_few_steps_lower_the_loss(prompted: PromptedLM, kind: str) -> None:
    torch.manual_seed(0)
    module = build_soft_prompt(
        prompt_config(kind), prompted.token_prompts(4 if kind == "mixture" else 1, 3)
    )
    z = torch.randn(4, 6)
    targets = prompted.targets(["cats are small pets", "what fell on monday"] * 2, 8)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-1)
    with torch.no_grad():
        first = float(prompted.loss(module(z), targets))
    for _ in range(40):
        loss = prompted.loss(module(z), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        last = float(prompted.loss(module(z), targets))
    assert last < 0.7 * first, (first, last)


def test_sampling_respects_length_and_is_reproducible(prompted: PromptedLM) -> None:
    module = build_soft_prompt(prompt_config("mlp"), prompted.token_prompts(1, 3))
    prefix = module(torch.randn(3, 6)).detach()
    sampling = SamplingConfig(max_new_tokens=4, temperature=1.0, top_p=0.9, num_per_prompt=2)
    torch.manual_seed(11)
    first = prompted.sample(prefix, sampling)
    torch.manual_seed(11)
    again = prompted.sample(prefix, sampling)
    assert first == again
    assert [len(row) for row in first] == [2, 2, 2]
    assert all(len(q.split()) <= 4 for row in first for q in row)
    torch.manual_seed(12)
    assert prompted.sample(prefix, sampling) != first
    greedy = SamplingConfig(max_new_tokens=3, temperature=0.0)
    texts = prompted.sample_text(["cats are", "the stock market fell on"], greedy)
    assert texts == prompted.sample_text(["cats are", "the stock market fell on"], greedy)
    assert all(len(row) == 1 and len(row[0].split()) <= 3 for row in texts)


def test_prompt_folder_holds_the_prompt_only_and_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = build_soft_prompt(prompt_config("mixture"))
    spec = SoftSRVSpec(prompt=module.config, lm="some/lm", context_encoder="default")
    save_soft_prompt(tmp_path / "p", module, spec)
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [
        "config.json",
        "prompt.safetensors",
    ]
    loaded, read = load_soft_prompt(tmp_path / "p")
    assert read == spec
    z = torch.randn(2, 6)
    torch.testing.assert_close(loaded(z), module(z))
    with pytest.raises(FileNotFoundError, match="not a SoftSRV prompt folder"):
        load_soft_prompt(tmp_path)


def test_missing_lm_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CausalLMNotFoundError, match=r"no such GGUF file"):
        load_causal_lm(tmp_path / "missing.gguf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CausalLMNotFoundError, match="cannot load causal LM"):
        load_causal_lm(tmp_path / "empty")


def exact_nucleus(logits: torch.Tensor, top_p: float) -> list[set[int]]:
    probs = torch.softmax(logits, -1)
    out = []
    for row in probs:
        values, index = row.sort(descending=True)
        before = values.cumsum(0) - values
        out.append({int(i) for i, b in zip(index, before, strict=True) if b < top_p})
    return out


@pytest.mark.parametrize("candidates", [2, 512])
def test_fast_nucleus_draws_only_from_the_exact_nucleus(candidates: int) -> None:
    from models.nucleus import nucleus_sample

    torch.manual_seed(0)
    logits = torch.randn(6, 50) * torch.tensor([[0.1], [1.0], [3.0], [0.1], [5.0], [1.0]])
    allowed = exact_nucleus(logits, 0.8)
    seen: list[set[int]] = [set() for _ in range(6)]
    for _ in range(200):
        for row, token in enumerate(nucleus_sample(logits, 1.0, 0.8, candidates).tolist()):
            assert token in allowed[row]
            seen[row].add(token)
    assert seen[0] == allowed[0]  # a flat row: every nucleus token gets drawn
    torch.manual_seed(5)
    first = nucleus_sample(logits, 1.0, 0.8, candidates)
    torch.manual_seed(5)
    assert torch.equal(first, nucleus_sample(logits, 1.0, 0.8, candidates))


def test_fast_and_hf_sampling_both_respect_limits(prompted: PromptedLM) -> None:
    prefix = torch.randn(2, 3, 32)
    for fast in (True, False):
        sampling = SamplingConfig(max_new_tokens=3, top_p=0.9, fast_nucleus=fast)
        torch.manual_seed(1)
        texts = prompted.sample(prefix, sampling)
        assert all(len(row) == 1 and len(row[0].split()) <= 3 for row in texts)
