"""``POST /v1/generate`` on a tiny (untrained) GMLM: shapes, limits, errors, batching, and the
Python clients' ``generate``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import torch
from fastapi.testclient import TestClient

from models.gmlm import GenerativeMaskedLM, GmlmConfig
from models.gmlm_decoding import DecodingConfig
from service.client import AsyncLoupeClient, LoupeClient, LoupeError
from service.generation import GenerateJob, QueryGenerator
from tests.service.helpers import assert_error, wait_url_ready


@pytest.fixture(scope="module")
def gmlm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import build_tiny_bert

    backbone = build_tiny_bert(tmp_path_factory.mktemp("gmlm-backbone"))
    torch.manual_seed(0)
    model = GenerativeMaskedLM(GmlmConfig(backbone=str(backbone), max_target_length=10))
    return model.save(tmp_path_factory.mktemp("gmlm") / "model")


@pytest.fixture
def generate_client(make_client: Callable[..., TestClient], gmlm_folder: Path) -> TestClient:
    return make_client(generator=str(gmlm_folder))


def test_generate_returns_distinct_scored_queries(generate_client: TestClient) -> None:
    response = generate_client.post(
        "/v1/generate",
        json={
            "text": "Cats are small domesticated felines.",
            "num_generations": 3,
            "max_length": 5,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    texts = [g["text"] for g in body["generations"]]
    assert 1 <= len(texts) <= 3 and len(set(texts)) == len(texts)
    scores = [g["score"] for g in body["generations"]]
    assert scores == sorted(scores, reverse=True)
    assert 1 <= body["meta"]["iterations_run"] <= 4
    assert body["usage"]["total_tokens"] > 0
    models = generate_client.get("/v1/models").json()["data"]
    assert {"generator"} == {m["role"] for m in models if m["id"] == body["model"]}


def test_generate_is_reproducible_with_a_seed(generate_client: TestClient) -> None:
    request = {"text": "The stock market fell.", "num_generations": 4, "temperature": 1.0}
    first = generate_client.post("/v1/generate", json={**request, "seed": 3}).json()
    second = generate_client.post("/v1/generate", json={**request, "seed": 3}).json()
    assert first["generations"] == second["generations"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"text": "   "}, 422),
        ({"text": "x", "num_generations": 0}, 422),
        ({"text": "x", "iterations": 0}, 422),
        ({"text": "x", "max_length": 50}, 422),  # the tiny model writes at most 9 tokens
        ({"text": "x", "model": "another-model"}, 422),
        ({"text": "x", "unknown_field": 1}, 422),
    ],
)
def test_bad_generate_requests_are_refused(
    generate_client: TestClient, body: dict[str, object], status: int
) -> None:
    assert_error(generate_client.post("/v1/generate", json=body), status)
    assert generate_client.get("/health").status_code == 200


def test_generate_without_a_generator_is_503(client: TestClient) -> None:
    error = assert_error(client.post("/v1/generate", json={"text": "cats"}), 503)
    assert "generator" in error["message"]


def test_concurrent_requests_all_succeed_and_alike_settings_decode_together(
    generate_client: TestClient, gmlm_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ThreadPoolExecutor(6) as pool:
        bodies = [{"text": f"passage number {i}"} for i in range(6)]
        responses = list(pool.map(lambda b: generate_client.post("/v1/generate", json=b), bodies))
    assert all(r.status_code == 200 for r in responses)

    import service.generation as generation

    calls: list[int] = []
    real_generate = generation.generate

    def counting_generate(model, texts, config):
        calls.append(len(texts))
        return real_generate(model, texts, config)

    monkeypatch.setattr(generation, "generate", counting_generate)
    generator = QueryGenerator(GenerativeMaskedLM.load(gmlm_folder), "tiny")
    greedy, sampled = DecodingConfig(), DecodingConfig(temperature=1.0, num_generations=2)
    jobs = [GenerateJob(f"text {i}", greedy) for i in range(3)] + [GenerateJob("t", sampled)]
    outcomes = generator.generate_many(jobs)
    assert len(outcomes) == 4 and sorted(calls) == [1, 3]
    alone = generator.generate_many([GenerateJob("text 1", greedy)])[0]
    assert [g.text for g in alone.generations] == [g.text for g in outcomes[1].generations]


def test_the_clients_generate_against_a_live_server(live_server, gmlm_folder: Path) -> None:
    server = live_server(generator=str(gmlm_folder))
    wait_url_ready(server.url)
    text = "Cats are small domesticated felines."
    direct = httpx.post(
        f"{server.url}/v1/generate", json={"text": text, "num_generations": 2, "max_length": 5}
    ).json()
    with LoupeClient(server.url) as client:
        answer = client.generate(text, num_generations=2, max_length=5)
        with pytest.raises(LoupeError) as refused:
            client.generate(text, max_length=11)  # the generator writes at most 10
    assert [g.model_dump() for g in answer.generations] == direct["generations"]
    assert answer.model == direct["model"] and answer.usage.total_tokens > 0
    assert refused.value.status_code == 422 and "max_length" in refused.value.message

    async def generate_async() -> list[str]:
        async with AsyncLoupeClient(server.url) as client:
            sampled = await client.generate(text, num_generations=2, temperature=1.0, seed=5)
            again = await client.generate(text, num_generations=2, temperature=1.0, seed=5)
        assert sampled.generations == again.generations
        return [g.text for g in sampled.generations]

    assert 1 <= len(asyncio.run(generate_async())) <= 2
