"""API key, body-size limit, 500s and error isolation."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from fastapi.testclient import TestClient

from tests.service.helpers import assert_error

RERANK = {"query": "q", "documents": ["a", "b"]}


def test_api_key_required_when_configured(make_client: Callable[..., TestClient]):
    client = make_client(api_key="s3cret")
    error = assert_error(client.post("/v1/rerank", json=RERANK), 401, "unauthorized")
    assert "missing" in error["message"]
    wrong = client.post("/v1/rerank", json=RERANK, headers={"Authorization": "Bearer nope"})
    assert assert_error(wrong, 401, "unauthorized")["message"] == "invalid API key"
    assert wrong.headers["WWW-Authenticate"] == "Bearer"
    basic = client.post("/v1/rerank", json=RERANK, headers={"Authorization": "Basic s3cret"})
    assert_error(basic, 401)
    ok = client.post("/v1/rerank", json=RERANK, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200, ok.text
    # a bad body without the key is still 401: the key is checked before the body is read
    assert_error(client.post("/v2/rerank", content=b"{oops"), 401)
    assert_error(client.delete("/v1/documents/x"), 401)
    assert_error(client.get("/v1/models"), 401)
    for path in ("/health", "/ready", "/metrics", "/docs"):
        assert client.get(path).status_code == 200, path


def test_several_keys_are_each_accepted_while_one_rotates(
    make_client: Callable[..., TestClient],
):
    client = make_client(api_key="old-key,new-key")
    for key in ("old-key", "new-key"):
        ok = client.post("/v1/rerank", json=RERANK, headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200, ok.text
    for key in ("old-key,new-key", "old", "other"):
        refused = client.post("/v1/rerank", json=RERANK, headers={"Authorization": f"Bearer {key}"})
        assert_error(refused, 401, "unauthorized")


def test_a_read_key_reads_but_cannot_change_documents(make_client: Callable[..., TestClient]):
    client = make_client(api_key="admin", read_api_key="page-a,page-b")
    admin, page = ({"Authorization": f"Bearer {key}"} for key in ("admin", "page-b"))
    docs = {"documents": [{"id": "d/1", "text": "A loupe magnifies."}]}
    assert client.post("/v1/documents", json=docs, headers=admin).status_code == 200
    reads = [
        client.post("/v1/search", json={"query": "loupe"}, headers=page),
        client.post("/v1/rerank", json=RERANK, headers=page),
        client.post("/v1/embed", json={"input": ["x"]}, headers=page),
        client.get("/v1/documents/d/1", headers=page),
        client.get("/v1/documents", headers=page),
        client.get("/v1/models", headers=page),
    ]
    assert [r.status_code for r in reads] == [200] * len(reads)
    writes = [
        client.post("/v1/documents", json=docs, headers=page),
        client.post("/v1/documents/", json=docs, headers=page),
        client.post("/v1/documents/delete", json={"ids": ["d/1"]}, headers=page),
        client.delete("/v1/documents/d/1", headers=page),
    ]
    for refused in writes:
        assert "may read" in assert_error(refused, 403, "forbidden")["message"]
    assert client.get("/v1/documents/d/1", headers=admin).status_code == 200  # nothing changed
    assert client.delete("/v1/documents/d/1", headers=admin).status_code == 200
    assert_error(client.post("/v1/search", json={"query": "q"}), 401)
    # read keys alone: authentication on, and no key may write
    only_reads = make_client(read_api_key="page")
    assert_error(only_reads.post("/v1/rerank", json=RERANK), 401)
    bearer = {"Authorization": "Bearer page"}
    assert only_reads.post("/v1/rerank", json=RERANK, headers=bearer).status_code == 200
    assert_error(only_reads.post("/v1/documents", json=docs, headers=bearer), 403, "forbidden")


def test_browsers_on_allowed_origins_may_call_with_a_key(make_client: Callable[..., TestClient]):
    client = make_client(api_key="secret", cors_origins="https://app.example")
    allowed = {"Origin": "https://app.example"}
    preflight = client.options(
        "/v1/rerank",
        headers={
            **allowed,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )  # a browser sends no key with it
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    answer = client.post(
        "/v1/rerank", json=RERANK, headers={**allowed, "Authorization": "Bearer secret"}
    )
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == "https://app.example"
    denied = client.post("/v1/rerank", json=RERANK, headers=allowed)  # readable by the page
    assert_error(denied, 401, "unauthorized")
    assert denied.headers["Access-Control-Allow-Origin"] == "https://app.example"
    other = client.post(
        "/v1/rerank",
        json=RERANK,
        headers={"Origin": "https://evil.example", "Authorization": "Bearer secret"},
    )
    assert "Access-Control-Allow-Origin" not in other.headers
    refused = client.options(
        "/v1/rerank",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert refused.status_code == 400 and "Access-Control-Allow-Origin" not in refused.headers


def test_no_cors_headers_unless_origins_are_configured(client: TestClient):
    answer = client.post("/v1/rerank", json=RERANK, headers={"Origin": "https://app.example"})
    assert answer.status_code == 200 and "Access-Control-Allow-Origin" not in answer.headers


def test_no_api_key_configured_means_open(client: TestClient):
    assert client.post("/v1/rerank", json=RERANK).status_code == 200


def test_body_over_the_limit_is_413(make_client: Callable[..., TestClient]):
    client = make_client(max_body_bytes=4096)
    response = client.post("/v1/rerank", json={"query": "q", "documents": ["x" * 5000]})
    assert_error(response, 413, "body_too_large")

    def chunks():  # no Content-Length: counted while reading
        for _ in range(10):
            yield b" " * 1000

    streamed = client.post(
        "/v1/rerank", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error(streamed, 413, "body_too_large")
    assert client.post("/v1/rerank", json=RERANK).status_code == 200


class FailingReranker:
    """Wraps a re-ranker; raises for any query containing 'boom'."""

    def __init__(self, inner):
        self.inner = inner
        self.calibration = None
        self.calls: list[int] = []

    @property
    def name(self) -> str:
        return "failing"

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        return self.score_many([query], [documents])[0]

    @property
    def calibrated(self) -> bool:
        return bool(self.inner.calibrated)

    def relevance_scores(self, query: str, scores: np.ndarray) -> np.ndarray | None:
        return self.inner.relevance_scores(query, scores)

    def score_many(self, queries, documents):
        self.calls.append(len(queries))
        if any("boom" in q for q in queries):
            raise RuntimeError("model exploded")
        return self.inner.score_many(queries, documents)


def test_internal_error_is_500_in_the_error_shape(make_client, tiny_models, caplog):
    client = make_client(reranker=FailingReranker(tiny_models[1]))
    response = client.post("/v1/rerank", json={"query": "boom", "documents": ["a"]})
    error = assert_error(response, 500, "internal_error")
    assert "exploded" not in error["message"]  # no internals leak to clients
    assert "model exploded" in caplog.text  # but the log has them
    rid = response.headers["X-Request-ID"]  # and the id that finds them there
    assert rid in error["message"] and f"(request {rid})" in caplog.text
    assert client.post("/v1/rerank", json=RERANK).status_code == 200
    assert 'route="/v1/rerank",status="500"' in client.get("/metrics").text


def test_every_answer_carries_a_request_id(client: TestClient):
    generated = client.post("/v1/rerank", json=RERANK).headers["X-Request-ID"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert client.get("/health").headers["X-Request-ID"] != generated
    echoed = client.post("/v1/rerank", json=RERANK, headers={"X-Request-ID": "trace-42/a"})
    assert echoed.headers["X-Request-ID"] == "trace-42/a"
    refused = client.post("/v1/rerank", json={}, headers={"X-Request-ID": "x" * 200})
    assert refused.status_code == 422 and len(refused.headers["X-Request-ID"]) == 32
    assert len(refused.headers.get_list("X-Request-ID")) == 1
