"""``/v1/embed``, ``/v1/models``, ``/health``, ``/ready``, ``/metrics`` and ``/docs``."""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from index.manifest import Manifest
from tests.service.helpers import assert_error, engine_loader_for, service_state, wait_ready


def test_embed_list_string_and_objects(client: TestClient, tiny_models):
    encoder = tiny_models[0]
    response = client.post("/v1/embed", json={"input": ["a loupe", "a lens"], "model": "x"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["model"] == encoder.model_name
    vectors = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    assert [d["index"] for d in body["data"]] == [0, 1]
    np.testing.assert_allclose(vectors, encoder.encode(["a loupe", "a lens"]), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert body["usage"]["total_tokens"] > 0

    single = client.post("/v1/embed", json={"input": "a loupe"}).json()
    np.testing.assert_allclose(single["data"][0]["embedding"], vectors[0], atol=1e-5)
    objects = client.post("/v1/embed", json={"input": [{"text": "a lens"}]}).json()
    np.testing.assert_allclose(objects["data"][0]["embedding"], vectors[1], atol=1e-5)


def test_embed_base64(client: TestClient):
    floats = client.post("/v1/embed", json={"input": ["x"]}).json()["data"][0]["embedding"]
    response = client.post("/v1/embed", json={"input": ["x"], "encoding_format": "base64"})
    decoded = np.frombuffer(base64.b64decode(response.json()["data"][0]["embedding"]), "<f4")
    np.testing.assert_allclose(decoded, floats, atol=1e-6)


def test_every_embedding_type_the_schemas_take_is_written() -> None:
    from typing import get_args

    from service.routers.embed_encoding import FORMS
    from service.schemas import CohereEmbeddingType, EmbedRequest

    assert set(get_args(CohereEmbeddingType)) == set(FORMS)
    jina = EmbedRequest.model_fields["embedding_type"].annotation
    jina_forms = {a for t in get_args(jina) for a in get_args(t)}
    assert "ubinary" in jina_forms and jina_forms <= set(FORMS)


def test_embed_takes_jinas_embedding_types(client: TestClient):
    floats = np.asarray(
        client.post("/v1/embed", json={"input": ["x"]}).json()["data"][0]["embedding"]
    )

    def embedded(kind: str) -> Any:
        answer = client.post("/v1/embed", json={"input": ["x"], "embedding_type": kind})
        assert answer.status_code == 200, answer.text
        return answer.json()["data"][0]["embedding"]

    ubinary, binary = embedded("ubinary"), embedded("binary")
    assert all(isinstance(b, int) for b in ubinary) and len(ubinary) == -(-len(floats) // 8)
    bits = np.unpackbits(np.asarray(ubinary, dtype=np.uint8))[: len(floats)]
    np.testing.assert_array_equal(bits, (floats > 0).astype(np.uint8))
    np.testing.assert_array_equal(binary, np.asarray(ubinary) - 128)
    decoded = np.frombuffer(base64.b64decode(embedded("base64")), "<f4")
    np.testing.assert_allclose(decoded, floats, atol=1e-6)
    np.testing.assert_allclose(embedded("float"), floats, atol=1e-6)
    assert_error(client.post("/v1/embed", json={"input": ["x"], "embedding_type": "int4"}), 422)


def test_embed_bad_inputs(client: TestClient, tiny_models):
    post = lambda body: client.post("/v1/embed", json=body)  # noqa: E731
    assert_error(post({"input": []}), 422, "invalid_request")
    assert_error(post({"texts": ["x"], "input": ["x"]}), 422, "invalid_request")
    assert_error(post({"input": [1]}), 422, "invalid_request")
    assert_error(post({"input": ["x"], "dimensions": 7}), 422, "invalid_request")
    assert_error(post({"input": ["x"], "encoding_format": "int8"}), 422, "invalid_request")
    assert_error(post({"input": ["x"] * 10_000}), 413, "too_many_documents")
    assert_error(post({"input": ["x" * 1_000_000]}), 413, "text_too_long")
    ok = post({"input": ["x"], "dimensions": tiny_models[0].dim, "user": "u", "task": "t"})
    assert ok.status_code == 200, ok.text


def test_embed_takes_cohere_bodies_at_v1_and_v2(client: TestClient):
    """Cohere's body (``texts`` or ``inputs``) gets Cohere's answer, with the vectors the
    OpenAI-shaped request gets; v1 without embedding_types answers plain float lists."""
    texts = ["a loupe", "a lens"]
    expected = [
        d["embedding"] for d in client.post("/v1/embed", json={"input": texts}).json()["data"]
    ]
    v1 = client.post("/v1/embed", json={"texts": texts, "model": "embed-english-v3.0"}).json()
    assert v1["response_type"] == "embeddings_floats" and v1["texts"] == texts
    np.testing.assert_allclose(v1["embeddings"], expected, atol=1e-6)
    assert v1["meta"]["api_version"]["version"] == "1"
    assert v1["meta"]["billed_units"]["input_tokens"] > 0
    by_type = {"texts": texts, "input_type": "search_query", "embedding_types": ["float", "base64"]}
    for path in ("/v1/embed", "/v2/embed"):
        answer = client.post(path, json=by_type).json()
        assert answer["response_type"] == "embeddings_by_type"
        np.testing.assert_allclose(answer["embeddings"]["float"], expected, atol=1e-6)
        decoded = [
            np.frombuffer(base64.b64decode(b), "<f4") for b in answer["embeddings"]["base64"]
        ]
        np.testing.assert_allclose(decoded, expected, atol=1e-6)
    inputs = {"inputs": [{"content": [{"type": "text", "text": t}]} for t in texts]}
    v2 = client.post("/v2/embed", json={**inputs, "input_type": "search_document"}).json()
    assert set(v2["embeddings"]) == {"float"} and v2["meta"]["api_version"]["version"] == "2"
    np.testing.assert_allclose(v2["embeddings"]["float"], expected, atol=1e-6)


def test_cohere_embed_truncation_and_refusals(client: TestClient):
    engine = service_state(client).runtime.engine
    head, tail = "loupe lens magnifier " * 200, "banana fruit potassium " * 200
    long_text = head + tail

    def embedded(**body: Any) -> np.ndarray:
        answer = client.post("/v2/embed", json={"texts": [long_text], **body})
        assert answer.status_code == 200, answer.text
        return np.asarray(answer.json()["embeddings"]["float"][0])

    kept_tail = engine.truncate([long_text], engine.text_token_limit, keep_end=True)[0][0]
    alone = client.post("/v2/embed", json={"texts": [kept_tail]}).json()["embeddings"]["float"][0]
    np.testing.assert_allclose(embedded(truncate="START"), alone, atol=1e-5)
    np.testing.assert_allclose(embedded(truncate="END"), embedded(), atol=1e-6)
    first_five = engine.truncate([long_text], 5)[0][0]
    five = client.post("/v2/embed", json={"texts": [first_five]}).json()["embeddings"]["float"][0]
    np.testing.assert_allclose(embedded(max_tokens=5), five, atol=1e-5)
    too_long = client.post("/v2/embed", json={"texts": [long_text], "truncate": "NONE"})
    assert "truncate" in assert_error(too_long, 413, "text_too_long")["message"]
    short = client.post("/v2/embed", json={"texts": ["a loupe"], "truncate": "NONE"})
    assert short.status_code == 200
    refused: list[dict[str, Any]] = [
        {"texts": []},
        {"texts": ["x"], "inputs": [{"content": [{"type": "text", "text": "x"}]}]},
        {"images": ["data:image/png;base64,AAAA"]},
        {"texts": ["x"], "input_type": "image"},
        {"texts": ["x"], "embedding_types": ["int4"]},
        {"texts": ["x"], "output_dimension": 3},
        {"inputs": [{"content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
    ]
    for body in refused:
        assert_error(client.post("/v2/embed", json=body), 422)
    message = assert_error(client.post("/v2/embed", json=refused[4]), 422)["message"]
    assert message.startswith("embedding_types.0:") and "'binary' or 'ubinary'" in message


def test_cohere_embed_answers_bytes_and_bits(client: TestClient, tiny_models):
    """int8 and uint8: each dimension times one fixed scale, rounded (uint8: plus 128);
    binary and ubinary: the signs as bits, first dimension highest (binary: minus 128)."""
    from service.routers.embed_encoding import int8_scale

    texts = ["a loupe", "a lens", "a magnifier"]
    floats = np.asarray(
        [d["embedding"] for d in client.post("/v1/embed", json={"input": texts}).json()["data"]]
    )
    dim = tiny_models[0].dim
    kinds = ["int8", "uint8", "binary", "ubinary", "float"]
    for path in ("/v1/embed", "/v2/embed"):
        answer = client.post(path, json={"texts": texts, "embedding_types": kinds})
        assert answer.status_code == 200, answer.text
        by_type = answer.json()["embeddings"]
        assert set(by_type) == set(kinds)
        int8, uint8 = np.asarray(by_type["int8"]), np.asarray(by_type["uint8"])
        assert int8.shape == floats.shape and int8.min() >= -128 and int8.max() <= 127
        scaled = floats * int8_scale(dim)
        unclipped = np.abs(scaled) < 127
        assert unclipped.mean() > 0.95
        np.testing.assert_array_less(np.abs(int8 - scaled)[unclipped], 0.5 + 1e-6)
        np.testing.assert_array_equal(int8[~unclipped], np.sign(scaled[~unclipped]) * 127)
        np.testing.assert_array_equal(uint8, int8 + 128)
        ubinary, binary = np.asarray(by_type["ubinary"]), np.asarray(by_type["binary"])
        assert ubinary.shape == (len(texts), -(-dim // 8)) and ubinary.max() <= 255
        bits = np.unpackbits(ubinary.astype(np.uint8), axis=1)[:, :dim]
        np.testing.assert_array_equal(bits, (floats > 0).astype(np.uint8))
        np.testing.assert_array_equal(binary, ubinary - 128)


def test_models(client: TestClient, tiny_models):
    data = client.get("/v1/models").json()["data"]
    assert [m["role"] for m in data] == ["reranker", "encoder"]
    assert data[0]["id"] == tiny_models[1].name
    assert data[0]["max_tokens"] == tiny_models[1].encoder.max_length == 128
    assert data[1]["dimension"] == tiny_models[0].dim


def test_health_and_ready_while_loading(make_settings, tiny_models):
    from service.app import create_app

    release = threading.Event()
    load = engine_loader_for(*tiny_models)

    def slow_loader(settings):
        assert release.wait(30)
        return load(settings)

    app = create_app(make_settings(), engine_loader=slow_loader)
    with TestClient(app) as client:
        assert client.get("/health").json() == {"status": "loading"}
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.headers["Retry-After"]
        assert ready.json()["error"]["type"] == "not_ready"
        assert_error(client.post("/v1/rerank", json={"query": "q", "documents": ["d"]}), 503)
        release.set()
        wait_ready(client)
        assert client.get("/health").json() == {"status": "ok"}
        ready = client.get("/ready").json()
        generation = Manifest.load(make_settings().index).generation
        assert ready == {
            "ready": True,
            "status": "ok",
            "documents": 0,
            "read_only": False,
            "index_generation": generation,
        }


def test_failed_load_is_reported(make_settings):
    from service.app import create_app

    def broken_loader(settings):
        raise ValueError("no such model")

    with TestClient(create_app(make_settings(), engine_loader=broken_loader)) as client:
        for _ in range(200):
            if client.get("/health").status_code == 503:
                break
            threading.Event().wait(0.01)
        health = client.get("/health")
        assert health.status_code == 503
        assert "no such model" in health.json()["error"]["message"]
        assert client.get("/ready").json()["status"] == "failed"
        error = assert_error(client.post("/v1/embed", json={"input": ["x"]}), 503)
        assert "no such model" in error["message"]


def test_loading_waits_for_an_unreachable_vector_store(make_settings, tiny_models, monkeypatch):
    """While Qdrant cannot be reached (it may start beside the service), loading tries again
    and /ready says why it waits; the service then loads."""
    import service.state
    from index.errors import VectorStoreUnavailableError
    from service.app import create_app

    monkeypatch.setattr(service.state, "LOAD_RETRY_S", 0.3)
    load = engine_loader_for(*tiny_models)
    attempts: list[int] = []

    def loader(settings):
        attempts.append(1)
        if len(attempts) < 3:
            raise VectorStoreUnavailableError("cannot use Qdrant at http://qdrant:6333")
        return load(settings)

    with TestClient(create_app(make_settings(), engine_loader=loader)) as client:
        for _ in range(100):  # until the first attempt has failed
            waiting = client.get("/ready")
            if waiting.status_code != 503 or "Qdrant" in waiting.json()["error"]["message"]:
                break
            threading.Event().wait(0.005)
        assert waiting.status_code == 503 and waiting.json()["status"] == "loading"
        assert "cannot use Qdrant" in waiting.json()["error"]["message"]
        wait_ready(client)
        assert len(attempts) == 3
        assert client.get("/health").json() == {"status": "ok"}


def test_real_loader_starts_from_a_corpus(make_settings, tmp_path, service_model_dir):
    """``load_engine`` with ``--corpus``: the first start indexes it; the next does not."""
    from service.loading import load_engine

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "1", "text": "a loupe"}\n{"_id": "2", "text": "a banana"}\n')
    settings = make_settings(corpus=corpus)
    engine = load_engine(settings)
    try:
        assert engine.document_count() == 2
    finally:
        engine.close()
    corpus.write_text('{"_id": "3", "text": "only on a first start"}\n')
    engine = load_engine(settings)
    try:
        assert engine.document_count() == 2
    finally:
        engine.close()


def test_real_loader_and_eval_warn_when_another_reranker_wrote_the_token_store(
    make_settings, tmp_path, service_model_dir, caplog
):
    """An index whose token store another re-ranker wrote still serves, but every search
    would re-encode its candidates: the loader and ``loupe eval --index`` say so, and say
    how to fix it."""
    import torch

    from evaluation.jobs import retrieve_run
    from index.builder import IndexBuildConfig, build_index
    from models.late_interaction import LateInteractionConfig, LateInteractionModel
    from models.late_reranker import LateInteractionReranker
    from models.lite import ScorerConfig
    from service.loading import load_engine

    folders = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        config = LateInteractionConfig(
            backbone=str(service_model_dir), dim=8, q_len=8, d_len=16, scorer=ScorerConfig("maxsim")
        )
        folders.append(LateInteractionModel(config, device="cpu").save(tmp_path / f"lite{seed}"))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "1", "text": "a loupe"}\n{"_id": "2", "text": "a banana"}\n')
    build_index(
        IndexBuildConfig(
            corpus=corpus,
            out=tmp_path / "index",
            model=str(service_model_dir),
            token_store=True,
            reranker=str(folders[0]),
            show_progress=False,
        )
    )
    for folder, warned in ((folders[0], False), (folders[1], True)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="service.loading"):
            engine = load_engine(make_settings(reranker=str(folder)))
        engine.close()
        assert ("rebuild the index with loupe index build --token-store" in caplog.text) is warned
        caplog.clear()
        reranker = LateInteractionReranker(LateInteractionModel.load(folder, device="cpu"))
        with caplog.at_level(logging.WARNING, logger="evaluation.jobs"):
            _, timings = retrieve_run(tmp_path / "index", {"q": "loupe"}, 2, "cpu", reranker)
        assert ("rebuild the index with loupe index build --token-store" in caplog.text) is warned
        assert timings["token_store_hit_rate"] == (0.0 if warned else 1.0)


def test_metrics(client: TestClient):
    client.post("/v1/rerank", json={"query": "q", "documents": ["a", "b"]})
    client.post("/v1/rerank", json={"query": "", "documents": ["a"]})
    client.get("/nope")
    client.delete("/v1/documents/missing")
    for _ in range(3):  # one miss, then two hits of the query cache
        client.post("/v1/search", json={"query": "a repeated query"})
    text = client.get("/metrics").text
    assert 'loupe_cache_hits_total{cache="query"} 2.0' in text
    assert 'loupe_cache_misses_total{cache="query"} 1.0' in text
    assert 'loupe_cache_entries{cache="query"} 1.0' in text
    bound = next(line for line in text.splitlines() if line.startswith("loupe_cache_max_bytes"))
    assert bound.startswith('loupe_cache_max_bytes{cache="query"}')
    assert float(bound.split()[-1]) == 32 * 2**20
    assert 'loupe_requests_total{method="POST",route="/v1/rerank",status="200"} 1.0' in text
    assert 'loupe_requests_total{method="POST",route="/v1/rerank",status="422"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert 'route="/v1/documents/{doc_id:path}",status="404"' in text
    assert 'loupe_request_seconds_bucket{le="0.005",method="POST",route="/v1/rerank"}' in text
    assert 'loupe_batch_requests_count{queue="rerank"} 1.0' in text
    assert 'loupe_queue_depth{queue="rerank"} 0.0' in text
    assert "loupe_index_documents 0.0" in text


def test_docs_and_openapi(client: TestClient):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/rerank", "/v2/rerank", "/v1/search", "/v1/documents", "/v1/embed"):
        assert path in paths


def test_unknown_route_and_method_are_shaped(client: TestClient):
    assert_error(client.get("/v1/nothing"), 404, "not_found")
    refused = client.get("/v1/rerank")
    assert_error(refused, 405, "method_not_allowed")
    assert refused.headers["Allow"] == "POST"
    # two routes share the path: Allow names the methods of both
    refused = client.request("OPTIONS", "/v1/documents")
    assert_error(refused, 405, "method_not_allowed")
    assert set(refused.headers["Allow"].split(", ")) >= {"GET", "POST"}
    refused = client.put("/v1/documents/some-id")
    assert set(refused.headers["Allow"].split(", ")) >= {"GET", "DELETE"}


def test_the_schema_says_which_strings_may_not_be_blank(client: TestClient):
    """Clients generated from the OpenAPI schema learn what the validators refuse."""
    import re

    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    query = schemas["SearchRequest"]["properties"]["query"]
    assert query["minLength"] == 1
    for text, accepted in [(" \u3000\x1c", False), ("\tq ", True)]:
        assert bool(re.search(query["pattern"], text)) is accepted
        response = client.post("/v1/search", json={"query": text})
        assert (response.status_code == 422) is not accepted, text
    after = next(
        p
        for p in client.get("/openapi.json").json()["paths"]["/v1/documents"]["get"]["parameters"]
        if p["name"] == "after"
    )
    assert after["schema"]["anyOf"][0]["minLength"] == 1


def test_the_schema_says_what_a_filter_is(client: TestClient):
    """Every filter the schema admits but one (mixed bound types, non-finite numbers and
    64-bit overflow are the validator's) is accepted, and what it refuses is refused."""
    jsonschema = pytest.importorskip("jsonschema")
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    schema = schemas["SearchRequest"]["properties"]["filter"]
    accepted: list[Any] = [
        None,
        {"topic": "food"},
        {"year": [2023, 2024], "new": True},
        {"year": {"gte": 2020, "lt": 2025}, "date": {"lte": "2024-12-31"}},
    ]
    refused: list[Any] = [
        {},
        {"topic": []},
        {"topic": None},
        {"topic": [[1]]},
        {"year": {}},
        {"year": {"ne": 1}},
        {"year": {"gt": True}},
        {'a"b': 1},
        {"": 1},
    ]
    for given in accepted + refused:
        valid = jsonschema.Draft202012Validator(schema).is_valid(given)
        response = client.post("/v1/search", json={"query": "q", "filter": given})
        assert valid is (given in accepted), given
        assert (response.status_code == 200) is valid, (given, response.text)


def test_app_factory_loads_nothing_at_import(make_app: Callable[..., FastAPI]):
    app = make_app()
    assert app.state.loupe.runtime is None and app.state.loupe.status == "loading"


def test_tei_embed_answers_a_list_of_vectors(make_client, tmp_path) -> None:
    """/embed takes TEI's body ({"inputs": str | [str]}) and answers [[float]], the vectors
    /v1/embed gives; what Loupe cannot do is refused with 422, long texts with 413 unless
    truncate."""
    client = make_client()
    texts = ["a loupe", "a magnifying glass"]
    vectors = client.post("/embed", json={"inputs": texts})
    assert vectors.status_code == 200, vectors.text
    openai_shaped = client.post("/v1/embed", json={"input": texts}).json()["data"]
    expected = [d["embedding"] for d in openai_shaped]
    np.testing.assert_allclose(vectors.json(), expected, rtol=1e-6)
    single = client.post("/embed", json={"inputs": "a loupe", "normalize": True}).json()
    np.testing.assert_allclose(single, expected[:1], rtol=1e-6)
    refused: list[dict[str, Any]] = [
        {"inputs": texts, "normalize": False},
        {"inputs": texts, "prompt_name": "query"},
        {"inputs": texts, "dimensions": 3},
        {"inputs": []},
        {"input": texts},
    ]
    for body in refused:
        assert_error(client.post("/embed", json=body), 422)
    long_text = "word " * 20_000
    assert (
        "truncate"
        in assert_error(client.post("/embed", json={"inputs": long_text}), 413)["message"]
    )
    assert client.post("/embed", json={"inputs": long_text, "truncate": True}).status_code == 200
    # under max_text_chars but over the encoder's tokens: refused too unless truncate
    engine = service_state(client).runtime.engine
    over = "word " * (engine.text_token_limit + 5)
    message = assert_error(client.post("/embed", json={"inputs": [over, "x"]}), 413)["message"]
    assert f"1 of the inputs are longer than the {engine.text_token_limit} tokens" in message
    at_the_limit = engine.truncate([over], engine.text_token_limit)[0][0]
    assert client.post("/embed", json={"inputs": at_the_limit}).status_code == 200
    # truncation from the left keeps a text's end: as if only its end had been sent
    head, tail = "loupe lens magnifier " * 200, "banana fruit potassium " * 200
    kept_tail = engine.truncate([head + tail], engine.text_token_limit, keep_end=True)[0][0]
    assert tail.endswith(kept_tail) and len(kept_tail) < len(tail)
    left, right, alone = (
        client.post("/embed", json=body).json()[0]
        for body in (
            {"inputs": head + tail, "truncate": True, "truncation_direction": "Left"},
            {"inputs": head + tail, "truncate": True},
            {"inputs": kept_tail},
        )
    )
    np.testing.assert_allclose(left, alone, atol=1e-5)
    assert float(np.dot(left, right)) < 0.9  # the start and the end differ
    keyed = make_client(api_key="s3cret", index=tmp_path / "keyed")
    assert_error(keyed.post("/embed", json={"inputs": texts}), 401, "unauthorized")
