"""``POST /v1/rerank`` and ``/v2/rerank``: results, compatibility fields and bad inputs."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.service.helpers import assert_error, service_state, wait_ready

DOCS = [
    "The loupe is a small magnifying glass used by jewellers.",
    "Bananas are rich in potassium.",
    "A hand lens magnifies small objects.",
    "The stock market fell on Monday.",
]


def test_rerank_orders_by_score_and_matches_the_reranker(client: TestClient, tiny_models):
    response = client.post("/v1/rerank", json={"query": "magnifying lens", "documents": DOCS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id", "model", "results", "meta", "usage"}
    results = body["results"]
    assert sorted(r["index"] for r in results) == list(range(len(DOCS)))
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert all("document" not in r for r in results)  # return_documents defaults to false
    expected = tiny_models[1].score("magnifying lens", DOCS)
    assert [r["index"] for r in results] == list(np.argsort(-expected, kind="stable"))
    np.testing.assert_allclose(scores, np.sort(expected)[::-1], rtol=1e-5, atol=1e-6)
    assert body["usage"]["total_tokens"] > len(DOCS)
    assert body["meta"]["api_version"]["version"] == "2"
    assert body["meta"]["billed_units"]["search_units"] == 1
    assert body["model"] == tiny_models[1].name


def test_v2_path_top_n_objects_and_return_documents(client: TestClient):
    documents = [{"text": t} for t in DOCS]
    v1 = client.post("/v1/rerank", json={"query": "lens", "documents": DOCS}).json()
    response = client.post(
        "/v2/rerank",
        json={"query": "lens", "documents": documents, "top_n": 2, "return_documents": True},
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == [r["index"] for r in v1["results"]][:2]
    for r in results:
        assert r["document"] == {"text": DOCS[r["index"]]}


def test_voyage_bodies_get_voyage_answers(client: TestClient):
    cohere_shaped = client.post("/v1/rerank", json={"query": "a loupe", "documents": DOCS}).json()
    body = {"query": "a loupe", "documents": DOCS, "model": "rerank-2", "top_k": 2}
    answer = client.post("/v1/rerank", json={**body, "truncation": True, "return_documents": True})
    assert answer.status_code == 200, answer.text
    voyage = answer.json()
    assert voyage["object"] == "list" and voyage["usage"]["total_tokens"] > 0
    assert [r["index"] for r in voyage["data"]] == [
        r["index"] for r in cohere_shaped["results"][:2]
    ]
    assert [r["document"] for r in voyage["data"]] == [DOCS[r["index"]] for r in voyage["data"]]
    plain = client.post("/v1/rerank", json={"query": "a loupe", "documents": DOCS, "top_k": 9})
    assert "document" not in plain.json()["data"][0] and len(plain.json()["data"]) == len(DOCS)
    long_text = "loupe " * 10_000
    kept = client.post("/v1/rerank", json={**body, "documents": [long_text], "truncation": True})
    assert kept.status_code == 200
    refused = client.post(
        "/v1/rerank", json={**body, "documents": [long_text], "truncation": False}
    )
    assert "truncation" in assert_error(refused, 413, "text_too_long")["message"]
    # under max_text_chars, but longer than the re-ranker reads: refused too without cutting
    engine = service_state(client).runtime.engine
    limit = engine.rerank_max_length
    over = "loupe " * (limit + 10)
    not_cut = {**body, "documents": [over, "short"], "truncation": False}
    message = assert_error(client.post("/v1/rerank", json=not_cut), 413, "text_too_long")
    assert f"1 of the documents are longer than the {limit} tokens" in message["message"]
    at_the_limit = engine.truncate([over], limit)[0][0]  # exactly what the re-ranker reads
    within = {**body, "documents": [at_the_limit, "short"], "truncation": False}
    assert client.post("/v1/rerank", json=within).status_code == 200
    assert client.post("/v1/rerank", json={**not_cut, "truncation": True}).status_code == 200
    bad = assert_error(client.post("/v1/rerank", json={**body, "top_k": 0}), 422)
    assert bad["message"].startswith("top_k:")
    mixed = client.post("/v1/rerank", json={**body, "top_n": 2})  # top_n is Cohere's
    assert assert_error(mixed, 422)["message"].startswith("top_n:")
    assert client.post("/v2/rerank", json=body).status_code == 422  # Cohere's path only


def test_top_n_larger_than_documents_returns_all(client: TestClient):
    body = client.post("/v1/rerank", json={"query": "q", "documents": DOCS, "top_n": 50}).json()
    assert len(body["results"]) == len(DOCS)


def test_sdk_fields_are_accepted(client: TestClient):
    """Fields Cohere's and Jina's SDKs send must not be refused as unknown."""
    response = client.post(
        "/v1/rerank",
        json={
            "model": "rerank-v3.5",
            "query": "lens",
            "documents": DOCS,
            "top_n": 3,
            "max_tokens_per_doc": 4096,
            "priority": 0,
            "max_chunks_per_doc": 10,
            "return_documents": False,
        },
    )
    assert response.status_code == 200, response.text


def test_rank_fields_join_object_fields(client: TestClient):
    documents = [{"title": "Loupe", "body": t} for t in DOCS]
    response = client.post(
        "/v1/rerank",
        json={"query": "lens", "documents": documents, "rank_fields": ["title", "body"]},
    )
    assert response.status_code == 200, response.text
    missing = client.post("/v1/rerank", json={"query": "lens", "documents": documents})
    assert_error(missing, 422, "invalid_request")


def test_max_tokens_per_doc_truncates_instead_of_refusing(client: TestClient):
    long_doc = "magnifier " * 100_000  # 1 MB
    response = client.post(
        "/v1/rerank",
        json={
            "query": "lens",
            "documents": [long_doc, "short"],
            "max_tokens_per_doc": 16,
            "return_documents": True,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["meta"]["warnings"] == ["1 documents were cut to 16 tokens"]
    # the echoed document is the one given, not the truncated one
    assert {len(r["document"]["text"]) for r in body["results"]} == {len(long_doc), 5}
    assert body["usage"]["total_tokens"] < 100


# --- bad inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "   "])
def test_empty_query_is_422(client: TestClient, query: str):
    error = assert_error(
        client.post("/v1/rerank", json={"query": query, "documents": DOCS}), 422, "invalid_request"
    )
    assert "query" in error["message"]


def test_no_documents_is_422(client: TestClient):
    error = assert_error(
        client.post("/v1/rerank", json={"query": "q", "documents": []}), 422, "invalid_request"
    )
    assert "documents" in error["message"]
    assert_error(client.post("/v1/rerank", json={"query": "q"}), 422, "invalid_request")


def test_ten_thousand_documents_is_413(client: TestClient):
    response = client.post("/v1/rerank", json={"query": "q", "documents": ["d"] * 10_000})
    error = assert_error(response, 413, "too_many_documents")
    assert "10000" in error["message"] and "1000" in error["message"]


def test_one_megabyte_document_is_413(client: TestClient):
    response = client.post("/v1/rerank", json={"query": "q", "documents": ["x" * 1_000_000]})
    error = assert_error(response, 413, "text_too_long")
    assert "max_tokens_per_doc" in error["message"]


def test_long_query_is_413(client: TestClient):
    response = client.post("/v1/rerank", json={"query": "x" * 40_000, "documents": ["d"]})
    assert_error(response, 413, "text_too_long")


@pytest.mark.parametrize(
    "body",
    [
        {"query": 42, "documents": DOCS},
        {"query": "q", "documents": "not a list"},
        {"query": "q", "documents": [1, 2]},
        {"query": "q", "documents": DOCS, "top_n": "three"},
        {"query": "q", "documents": DOCS, "top_n": 0},
        {"query": "q", "documents": DOCS, "return_documents": "maybe"},
        {"query": "q", "documents": DOCS, "max_tokens_per_doc": -1},
        ["q", DOCS],
    ],
)
def test_wrong_types_are_422(client: TestClient, body: Any):
    assert_error(client.post("/v1/rerank", json=body), 422, "invalid_request")


@pytest.mark.parametrize(
    "raw",
    [b'{"query": "q", "documents": [', b"not json", b'{"query": "q",}', b'>\xff"U='],
    ids=["cut", "words", "trailing comma", "not utf-8"],
)
@pytest.mark.parametrize("path", ["/v1/rerank", "/v1/embed", "/embed"])
def test_invalid_json_is_422(client: TestClient, raw: bytes, path: str):
    response = client.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert_error(response, 422, "invalid_json")


def test_unknown_field_is_422(client: TestClient):
    response = client.post("/v1/rerank", json={"query": "q", "documents": DOCS, "temperature": 0.5})
    error = assert_error(response, 422, "invalid_request")
    assert "temperature" in error["message"]


def test_bad_request_does_not_disturb_good_ones(client: TestClient):
    good = {"query": "lens", "documents": DOCS}
    first = client.post("/v1/rerank", json=good).json()
    assert client.post("/v1/rerank", content=json.dumps(good)[:-3]).status_code == 422
    assert client.post("/v1/rerank", json=good).json()["results"] == first["results"]


def test_a_calibrated_reranker_reports_probabilities_in_the_same_order(
    make_client, tiny_models
) -> None:
    """With a calibration (``calibration.json`` beside a model), /v1/rerank's relevance_score
    and /v1/search's are sigmoid(slope * score + intercept): in [0, 1], same order."""
    from models.calibration import ScoreCalibration
    from models.reranker import DualEncoderReranker

    encoder, plain = tiny_models
    calibration = ScoreCalibration(slope=8.0, intercept=-2.0)
    client = make_client(reranker=DualEncoderReranker(encoder, calibration=calibration))
    body = client.post("/v1/rerank", json={"query": "magnifying lens", "documents": DOCS}).json()
    raw = plain.score("magnifying lens", DOCS)
    assert [r["index"] for r in body["results"]] == list(np.argsort(-raw, kind="stable"))
    expected = 1 / (1 + np.exp(-(8.0 * np.sort(raw)[::-1] - 2.0)))
    scores = [r["relevance_score"] for r in body["results"]]
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert all(0.0 <= s <= 1.0 for s in scores)

    documents = [{"id": f"d{i}", "text": t} for i, t in enumerate(DOCS)]
    assert client.post("/v1/documents", json={"documents": documents}).status_code == 200
    hits = client.post("/v1/search", json={"query": "lens", "top_n": 4}).json()["results"]
    for hit in hits:
        assert hit["relevance_score"] == pytest.approx(
            float(calibration.probabilities(np.array([hit["score"]]))[0]), rel=1e-5
        )
    threshold = sorted(hit["relevance_score"] for hit in hits)[2]
    kept = client.post(
        "/v1/search", json={"query": "lens", "top_n": 4, "min_relevance_score": threshold}
    ).json()["results"]
    assert [h["id"] for h in kept] == [h["id"] for h in hits if h["relevance_score"] >= threshold]
    assert len(kept) == 2
    unranked = {"query": "lens", "rerank": False, "min_relevance_score": 0.1}
    refused = client.post("/v1/search", json=unranked)
    assert "rerank=false" in assert_error(refused, 422, "invalid_request")["message"]
    first_stage = client.post("/v1/search", json={"query": "lens", "rerank": False}).json()
    assert all("relevance_score" not in hit for hit in first_stage["results"])
    cards = client.get("/v1/models").json()["data"]
    assert [c.get("calibrated") for c in cards if c["role"] == "reranker"] == [True]


def test_an_uncalibrated_reranker_reports_raw_scores_and_says_so(client: TestClient) -> None:
    cards = client.get("/v1/models").json()["data"]
    assert [c.get("calibrated") for c in cards if c["role"] == "reranker"] == [False]
    client.post("/v1/documents", json={"documents": [{"id": "a", "text": DOCS[0]}]})
    hits = client.post("/v1/search", json={"query": "lens"}).json()["results"]
    assert hits and all("relevance_score" not in hit for hit in hits)
    refused = client.post("/v1/search", json={"query": "lens", "min_relevance_score": 0.5})
    assert "not calibrated" in assert_error(refused, 422, "invalid_request")["message"]
    out_of_range = client.post("/v1/search", json={"query": "lens", "min_relevance_score": 2})
    assert_error(out_of_range, 422, "invalid_request")


def test_max_chunks_per_doc_caps_the_windows_read(make_client, tiny_models) -> None:
    """Cohere v1's ``max_chunks_per_doc``: a document is read through at most that many of
    the re-ranker's windows (here 16 tokens, overlapping by 4), as if cut to the tokens
    they cover."""
    from models.late_interaction import LateInteractionConfig, LateInteractionModel
    from models.late_reranker import LateInteractionReranker
    from models.lite import ScorerConfig

    encoder, _ = tiny_models
    config = LateInteractionConfig(
        dim=8, q_len=8, d_len=16, scorer=ScorerConfig(kind="maxsim"), doc_windows=4
    )
    model = LateInteractionModel(config, encoder)
    reranker = LateInteractionReranker(model)
    client = make_client(reranker=reranker)
    long_doc = " ".join(f"word{i}" for i in range(60)) + " a magnifying lens"
    body = {"query": "lens", "documents": [long_doc, "short"]}

    def relevance(response: Any) -> list[float]:
        assert response.status_code == 200, response.text
        return [
            r["relevance_score"]
            for r in sorted(response.json()["results"], key=lambda r: r["index"])
        ]

    whole = client.post("/v1/rerank", json=body)
    assert whole.json()["meta"].get("warnings") is None
    # usage counts what the re-ranker reads: 4 windows cover 46 of the long document's tokens
    assert config.max_document_tokens == 46
    short = sum(encoder.count_tokens(["lens", "short"]))
    assert whole.json()["usage"]["total_tokens"] == short + 46
    one = client.post("/v1/rerank", json={**body, "max_chunks_per_doc": 1})
    assert one.json()["meta"]["warnings"] == ["1 documents were cut to 14 tokens"]
    head = client.post("/v1/rerank", json={**body, "max_tokens_per_doc": 14})
    assert relevance(one) == relevance(head) != relevance(whole)
    both = client.post(
        "/v1/rerank", json={**body, "max_chunks_per_doc": 2, "max_tokens_per_doc": 5}
    )
    assert both.json()["meta"]["warnings"] == ["1 documents were cut to 5 tokens"]
    many = client.post("/v1/rerank", json={**body, "max_chunks_per_doc": 10})
    assert relevance(many) == relevance(whole)
    refused = client.post("/v1/rerank", json={**body, "max_chunks_per_doc": 0})
    assert_error(refused, 422, "invalid_request")


def test_a_cross_encoder_folder_serves_rerank_and_search(make_settings, tmp_path) -> None:
    """``--reranker`` naming a sequence-classification model serves it as a cross-encoder
    through the real loader: /v1/rerank and /v1/search order by its logits, and report its
    sigmoid as relevance_score, so min_relevance_score works with it."""
    from models.cross_encoder import CrossEncoderConfig, CrossEncoderReranker
    from service.app import create_app
    from tests.conftest import build_tiny_bert

    folder = build_tiny_bert(tmp_path / "cross-encoder", labels=1)
    reference = CrossEncoderReranker.load(CrossEncoderConfig(str(folder), device="cpu"))
    app = create_app(make_settings(reranker=str(folder)))
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        cards = client.get("/v1/models").json()["data"]
        card = next(c for c in cards if c["role"] == "reranker")
        assert card["id"] == f"cross-encoder:{folder}" and card["calibrated"] is True
        assert card["max_tokens"] == 288  # 8 windows of 64 tokens overlapping by 32

        query = "magnifying lens"
        body = client.post("/v1/rerank", json={"query": query, "documents": DOCS}).json()
        raw = reference.score(query, DOCS)
        assert [r["index"] for r in body["results"]] == list(np.argsort(-raw, kind="stable"))
        np.testing.assert_allclose(
            [r["relevance_score"] for r in body["results"]],
            1 / (1 + np.exp(-np.sort(raw)[::-1])),
            rtol=1e-4,
        )

        documents = [{"id": f"d{i}", "text": t} for i, t in enumerate(DOCS)]
        assert client.post("/v1/documents", json={"documents": documents}).status_code == 200
        hits = client.post("/v1/search", json={"query": query, "top_n": 4}).json()["results"]
        assert [h["id"] for h in hits] == [f"d{i}" for i in np.argsort(-raw, kind="stable")]
        threshold = sorted(h["relevance_score"] for h in hits)[2]
        kept = client.post(
            "/v1/search", json={"query": query, "top_n": 4, "min_relevance_score": threshold}
        ).json()["results"]
        assert [h["id"] for h in kept] == [h["id"] for h in hits[:2]]


# --- TEI-compatible POST /rerank ------------------------------------------------------------


def test_tei_rerank_answers_in_teis_shape(make_client, tiny_models) -> None:
    """/rerank takes TEI's body and answers a list of {index, score, text?}, best first:
    probabilities from a calibrated re-ranker, its raw scores with raw_scores."""
    from models.calibration import ScoreCalibration
    from models.reranker import DualEncoderReranker

    encoder, plain = tiny_models
    calibration = ScoreCalibration(slope=8.0, intercept=-2.0)
    client = make_client(reranker=DualEncoderReranker(encoder, calibration=calibration))
    raw = plain.score("magnifying lens", DOCS)
    order = list(np.argsort(-raw, kind="stable"))

    answer = client.post("/rerank", json={"query": "magnifying lens", "texts": DOCS})
    assert answer.status_code == 200, answer.text
    ranks = answer.json()
    assert [r["index"] for r in ranks] == order
    assert all(set(r) == {"index", "score"} for r in ranks)
    np.testing.assert_allclose(
        [r["score"] for r in ranks], calibration.probabilities(raw[order]), rtol=1e-5
    )
    cohere = client.post("/v1/rerank", json={"query": "magnifying lens", "documents": DOCS})
    assert [r["score"] for r in ranks] == [r["relevance_score"] for r in cohere.json()["results"]]

    raw_ranks = client.post(
        "/rerank",
        json={"query": "magnifying lens", "texts": DOCS, "raw_scores": True, "return_text": True},
    ).json()
    assert [r["index"] for r in raw_ranks] == order
    np.testing.assert_allclose([r["score"] for r in raw_ranks], raw[order], rtol=1e-5, atol=1e-6)
    assert [r["text"] for r in raw_ranks] == [DOCS[i] for i in order]


def test_tei_rerank_truncates_only_when_asked(client: TestClient) -> None:
    long_text = "magnifier " * 100_000  # 1 MB
    body = {"query": "lens", "texts": [long_text, "short"]}
    refused = client.post("/rerank", json=body)
    assert "truncate" in assert_error(refused, 413)["message"]
    limit = service_state(client).runtime.engine.rerank_max_length
    over = {"query": "lens", "texts": ["magnifier " * (limit + 10), "short"]}
    assert "truncate" in assert_error(client.post("/rerank", json=over), 413)["message"]
    for direction in ("right", "Left"):
        asked = {**body, "truncate": True, "truncation_direction": direction}
        cut = client.post("/rerank", json=asked)
        assert cut.status_code == 200, cut.text
        assert sorted(r["index"] for r in cut.json()) == [0, 1]
    bad_fields: list[dict[str, Any]] = [
        {"truncation_direction": "middle"},
        {"documents": ["x"]},
        {"texts": []},
    ]
    for bad in bad_fields:
        assert_error(client.post("/rerank", json={**body, **bad}), 422)


def test_truncating_from_the_start_keeps_a_texts_last_tokens(client: TestClient) -> None:
    from tests.service.helpers import service_state

    engine = service_state(client).runtime.engine
    text = " ".join(f"word{i}" for i in range(400))
    head, cut_head = engine.truncate([text, "short"], 20)
    tail, cut_tail = engine.truncate([text, "short"], 20, keep_end=True)
    assert cut_head == cut_tail == 1 and head[1] == tail[1] == "short"
    assert text.startswith(head[0]) and text.endswith(tail[0])
    assert engine.count_tokens([head[0]]) - 2 == engine.count_tokens([tail[0]]) - 2 == 20
    assert tail[0].endswith("word399")
    assert engine.truncate(["just a few words"], 20, keep_end=True) == (["just a few words"], 0)


def test_tei_rerank_needs_the_api_key_when_one_is_set(make_client) -> None:
    client = make_client(api_key="s3cret")
    body = {"query": "lens", "texts": DOCS}
    assert_error(client.post("/rerank", json=body), 401, "unauthorized")
    allowed = client.post("/rerank", json=body, headers={"Authorization": "Bearer s3cret"})
    assert allowed.status_code == 200
