"""Seeded mutation fuzzing of the HTTP edge: valid requests with one to three fields replaced
by random JSON values must be answered 2xx, 4xx or 503 (the generator is not loaded), never
500, and leave the service answering good requests, whatever kind of re-ranker serves."""

from __future__ import annotations

import copy
import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

VALID: dict[str, dict[str, Any]] = {
    "/v1/rerank": {
        "query": "loupe",
        "documents": ["a loupe", {"text": "bananas", "title": "t"}],
        "top_n": 2,
        "return_documents": True,
        "max_tokens_per_doc": 64,
        "rank_fields": ["text", "title"],
        "max_chunks_per_doc": 2,
    },
    "/v2/rerank": {"query": "loupe", "documents": ["a loupe", "b"], "top_n": 1, "model": "x"},
    "/rerank": {
        "query": "loupe",
        "texts": ["a loupe", "bananas"],
        "raw_scores": True,
        "return_text": True,
        "truncate": True,
        "truncation_direction": "left",
    },
    "/v1/search": {
        "query": "loupe",
        "top_n": 3,
        "candidates": 5,
        "first_stage": "hybrid",
        "filter": {"topic": ["a", "b"]},
    },
    "/v1/documents": {
        "documents": [{"id": "new", "text": "new loupe", "metadata": {"topic": "a", "n": 1}}]
    },
    "/v1/documents/delete": {"filter": {"topic": "none of them"}},
    "/v1/embed": {"input": ["a loupe", "b"]},
    "/embed": {
        "inputs": ["a loupe", "b"],
        "normalize": True,
        "truncate": True,
        "truncation_direction": "left",
    },
    "/v1/generate": {"text": "a loupe", "num_generations": 1},
}
LISTING = {"limit": "3", "include_text": "true", "filter": '{"topic": "a"}'}


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value: scalars at the edges of their types, long and odd strings, and
    (above depth 2) lists and objects of them."""
    kinds = 8 if depth >= 2 else 12
    kind = rng.randrange(kinds)
    if kind == 0:
        return rng.choice(["a", "loupe", " ", "\x00", "d1", "topic", "日本", "²", "dense"])
    if kind == 1:
        return rng.choice([0, 1, -1, 2, 100, 2**31, 2**63, 10**30])
    if kind == 2:
        return rng.choice([0.0, 0.5, -0.1, 1.0, 1e308])
    if kind == 3:
        return rng.choice([True, False])
    if kind == 4:
        return None
    if kind == 5:
        return "word " * rng.choice([3, 300, 3000])
    if kind == 6:
        return rng.choice(["", "   ", [], {}])
    if kind == 7:
        return rng.choice(["lexical", "hybrid", "bm25", "text", "title"])
    if kind == 8:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == 9:
        keys = ["a", "text", "id", "topic", "$gt", "", "title", "metadata"]
        return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if kind == 10:
        return [{"text": random_value(rng, depth + 1)}]
    return [{"id": "d1", "text": random_value(rng, depth + 1), "metadata": random_value(rng)}]


def mutated(rng: random.Random, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` with one to three changes: a field dropped, replaced, or one of its list
    items (or an item's field) replaced."""
    body = copy.deepcopy(body)
    for _ in range(rng.randint(1, 3)):
        if not body:
            break
        name = rng.choice(list(body))
        roll = rng.random()
        value = body[name]
        if roll < 0.15:
            del body[name]
        elif roll < 0.3 and isinstance(value, list) and value:
            i = rng.randrange(len(value))
            if isinstance(value[i], dict) and value[i]:
                value[i][rng.choice(list(value[i]))] = random_value(rng)
            else:
                value[i] = random_value(rng)
        else:
            body[name] = random_value(rng)
    return body


@pytest.fixture(params=["dual encoder", "late interaction", "cross-encoder"])
def any_reranker_client(
    request: pytest.FixtureRequest,
    make_client: Callable[..., TestClient],
    tiny_models: tuple[Any, Any],
    tmp_path: Path,
) -> TestClient:
    """A ready client on each kind of re-ranker (tiny random models)."""
    from models.cross_encoder import CrossEncoderConfig, CrossEncoderReranker
    from models.late_interaction import LateInteractionConfig, LateInteractionModel
    from models.late_reranker import LateInteractionReranker
    from models.lite import ScorerConfig
    from tests.conftest import build_tiny_bert

    encoder, dual = tiny_models
    if request.param == "late interaction":
        config = LateInteractionConfig(dim=8, q_len=8, d_len=16, scorer=ScorerConfig(kind="sorted"))
        return make_client(reranker=LateInteractionReranker(LateInteractionModel(config, encoder)))
    if request.param == "cross-encoder":
        folder = build_tiny_bert(tmp_path / "cross-encoder", labels=1)
        config_ce = CrossEncoderConfig(str(folder), device="cpu")
        return make_client(reranker=CrossEncoderReranker.load(config_ce))
    return make_client(reranker=dual)


def test_mutated_requests_never_answer_500(any_reranker_client: TestClient):
    client = any_reranker_client
    documents = [
        {"id": f"d{i}", "text": f"document {i} about a loupe", "metadata": {"topic": "ab"[i % 2]}}
        for i in range(10)
    ]
    assert client.post("/v1/documents", json={"documents": documents}).status_code == 200
    rng = random.Random(0)
    answers: Counter[tuple[str, int]] = Counter()
    failures = []
    # the valid bodies themselves first: every route is reached past validation at least once
    # (a single-field body such as /v1/documents' rarely survives a mutation)
    for path, body in VALID.items():
        answers[path, client.post(path, json=body).status_code // 100] += 1
    listing = client.get("/v1/documents", params=LISTING)
    answers["GET /v1/documents", listing.status_code // 100] += 1
    for _ in range(400):
        path = rng.choice([*VALID, "GET /v1/documents"])
        if path.startswith("GET"):
            params = dict(LISTING)
            for name in rng.sample([*LISTING, "after"], rng.randint(1, 3)):
                value = random_value(rng)
                params[name] = json.dumps(value) if rng.random() < 0.5 else str(value)
            response = client.get("/v1/documents", params=params)
        else:
            response = client.post(path, json=mutated(rng, VALID[path]))
        answers[path, response.status_code // 100] += 1
        if response.status_code >= 500 and response.status_code != 503:
            failures.append((path, response.status_code, response.text[:200]))
    assert not failures, failures[:5]
    # every route was reached both past validation and refused by its validation
    for path in [*VALID, "GET /v1/documents"]:
        expected_ok = 5 if path == "/v1/generate" else 2  # 503: no generator loaded
        assert answers[path, expected_ok] > 0 and answers[path, 4] > 0, (path, answers)
    hits = client.post("/v1/search", json={"query": "loupe", "top_n": 3}).json()["results"]
    assert len(hits) == 3
