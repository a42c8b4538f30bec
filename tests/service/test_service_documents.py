"""``POST`` and ``GET /v1/documents``, ``DELETE /v1/documents/{id}``,
``POST /v1/documents/delete`` and ``POST /v1/search``."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from index.manifest import Manifest
from index.metadata_filter import MetadataFilter
from service.engine import SearchJob
from tests.service.helpers import assert_error, service_state, wait_ready

CORPUS: list[dict[str, Any]] = [
    {"id": "loupe", "text": "A loupe is a small magnification device.", "metadata": {"n": 1}},
    {"id": "banana", "text": "Bananas are yellow fruit.", "title": "Fruit"},
    {"id": "lens", "text": "A lens focuses light."},
    {"id": "market", "text": "Stocks fell sharply on Monday."},
    {"id": "a/b c", "text": "An id with a slash and a space."},
]


def add(client: TestClient, documents: list[dict[str, Any]] = CORPUS) -> dict:
    response = client.post("/v1/documents", json={"documents": documents})
    assert response.status_code == 200, response.text
    return response.json()


def search(client: TestClient, **body) -> dict:
    response = client.post("/v1/search", json={"query": "magnifying lens", **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_add_then_search_reranked(client: TestClient):
    assert add(client) == {
        "upserted": 5,
        "ids": [d["id"] for d in CORPUS],
        "total_documents": 5,
    }
    body = search(client, top_n=3, candidates=5)
    assert set(body) == {"id", "model", "results", "timings"}
    assert set(body["timings"]) == {
        "queue_ms",
        "encode_ms",
        "first_stage_ms",
        "rerank_ms",
        "total_ms",
    }
    results = body["results"]
    assert len(results) == 3
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    for r in results:
        assert {"id", "score", "first_stage_score", "text"} <= set(r)
    by_id = {d["id"]: d for d in CORPUS}
    assert all(r["text"] == by_id[r["id"]]["text"] for r in results)


def test_search_without_rerank_keeps_first_stage_order(client: TestClient):
    add(client)
    body = search(client, rerank=False, candidates=5, top_n=5, return_documents=False)
    results = body["results"]
    assert len(results) == 5
    assert all(r["score"] == r["first_stage_score"] for r in results)
    assert all("text" not in r for r in results)
    assert body["timings"]["rerank_ms"] == 0.0
    # with reranking on, the same candidates come back re-scored
    reranked = search(client, candidates=5, top_n=5)["results"]
    assert {r["id"] for r in reranked} == {r["id"] for r in results}
    first_stage = {r["id"]: r["score"] for r in results}
    assert all(abs(r["first_stage_score"] - first_stage[r["id"]]) < 1e-5 for r in reranked)


def test_search_returns_title_and_metadata(client: TestClient):
    add(client)
    results = {r["id"]: r for r in search(client, candidates=5, top_n=5)["results"]}
    assert results["loupe"]["metadata"] == {"n": 1}
    assert results["banana"]["title"] == "Fruit"


def test_search_empty_index(client: TestClient):
    assert search(client)["results"] == []


def test_replace_by_id(client: TestClient):
    add(client)
    assert add(client, [{"id": "banana", "text": "Replaced text."}])["total_documents"] == 5
    texts = {r["id"]: r["text"] for r in search(client, candidates=10, top_n=10)["results"]}
    assert texts["banana"] == "Replaced text."
    assert len(texts) == 5


def test_get_a_stored_document(client: TestClient):
    add(client)
    got = client.get("/v1/documents/loupe")
    assert got.status_code == 200, got.text
    assert got.json() == {
        "id": "loupe",
        "text": "A loupe is a small magnification device.",
        "title": "",
        "metadata": {"n": 1},
    }
    assert client.get("/v1/documents/a%2Fb%20c").json()["text"] == CORPUS[4]["text"]
    add(client, [{"id": "loupe", "text": "Replaced.", "title": "New"}])
    assert client.get("/v1/documents/loupe").json()["title"] == "New"
    assert_error(client.get("/v1/documents/nope"), 404, "not_found")


def test_delete_and_404(client: TestClient):
    add(client)
    response = client.delete("/v1/documents/banana")
    assert response.status_code == 200, response.text
    assert response.json() == {"id": "banana", "deleted": True, "total_documents": 4}
    ids = {r["id"] for r in search(client, candidates=10, top_n=10)["results"]}
    assert "banana" not in ids
    assert_error(client.delete("/v1/documents/banana"), 404, "not_found")
    assert client.delete("/v1/documents/a%2Fb%20c").status_code == 200


def test_documents_survive_a_restart(make_app: Callable[..., FastAPI], make_settings):
    settings = make_settings()
    with TestClient(make_app(settings)) as first:  # exit runs the shutdown: snapshot, close
        wait_ready(first)
        add(first)
        first.delete("/v1/documents/market")
    with TestClient(make_app(settings)) as second:
        wait_ready(second)
        ids = {r["id"] for r in search(second, candidates=10, top_n=10)["results"]}
    assert ids == {d["id"] for d in CORPUS} - {"market"}


def test_documents_written_without_snapshot_are_replayed(make_app, make_settings):
    """The docstore is written first: documents added after the last snapshot come back."""
    settings = make_settings(snapshot_every=1_000_000)
    with TestClient(make_app(settings)) as first:
        wait_ready(first)
        add(first)
        state = service_state(first)
        engine = state.runtime.engine
        engine.close = engine.index.close  # simulate a crash: no snapshot on shutdown
    with TestClient(make_app(settings)) as second:
        wait_ready(second)
        assert second.get("/ready").json()["documents"] == len(CORPUS)
        assert len(search(second, candidates=10, top_n=10)["results"]) == len(CORPUS)


def test_document_bad_inputs(client: TestClient):
    post = lambda body: client.post("/v1/documents", json=body)  # noqa: E731
    assert_error(post({"documents": []}), 422, "invalid_request")
    assert_error(post({"documents": [{"id": "x"}]}), 422, "invalid_request")
    assert_error(post({"documents": [{"id": "", "text": "t"}]}), 422, "invalid_request")
    assert_error(post({"documents": [{"id": "x", "text": "t", "extra": 1}]}), 422)
    assert_error(post({"documents": [{"id": "x", "text": "t", "metadata": [1]}]}), 422)
    dup = {"documents": [{"id": "x", "text": "a"}, {"id": "x", "text": "b"}]}
    assert "twice" in assert_error(post(dup), 422)["message"]
    many = {"documents": [{"id": str(i), "text": "t"} for i in range(10_000)]}
    assert_error(post(many), 413, "too_many_documents")
    assert_error(post({"documents": [{"id": "x", "text": "x" * 1_000_000}]}), 413, "text_too_long")


def test_list_documents_a_page_at_a_time(client: TestClient):
    add(client)
    add(client, [{"id": "banana", "text": "Bananas, replaced.", "metadata": {"v": 2}}])
    pages, after = [], None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"after": after} if after else {})}
        response = client.get("/v1/documents", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["total_documents"] == 5 and page["documents"][0]["text"] is None
        pages.append([d["id"] for d in page["documents"]])
        after = page["next_cursor"]
        if after is None:
            break
    # id order, whatever order they were stored or replaced in
    assert pages == [["a/b c", "banana"], ["lens", "loupe"], ["market"]]
    last_full = client.get("/v1/documents", params={"limit": 5}).json()
    assert len(last_full["documents"]) == 5 and last_full["next_cursor"] is None
    full = client.get("/v1/documents", params={"limit": 1, "include_text": True}).json()
    assert full["documents"] == [
        {"id": "a/b c", "title": "", "metadata": {}, "text": CORPUS[4]["text"]}
    ]
    tagged = client.get("/v1/documents", params={"filter": '{"n": [1, 2]}', "limit": 1}).json()
    assert [d["id"] for d in tagged["documents"]] == ["loupe"] and tagged["next_cursor"] is None
    news = client.get("/v1/documents", params={"filter": '{"v": 2}'}).json()["documents"]
    assert [d["id"] for d in news] == ["banana"]
    ranged = client.get("/v1/documents", params={"filter": '{"n": {"gte": 1, "lt": 2}}'}).json()
    assert [d["id"] for d in ranged["documents"]] == ["loupe"]
    bad_params: list[dict[str, Any]] = [
        {"filter": "{"},
        {"filter": "[1]"},
        {"filter": "{}"},
        {"filter": '{"n": {"$gt": 0}}'},
        {"filter": '{"n": {"gt": 0, "lt": "1"}}'},
        {"limit": 0},
        {"limit": 1001},
        {"after": "x"},
        {"after": "-1"},
        {"after": "²"},
        {"after": "9" * 30},
        {"after": "_w"},  # base64 of the byte 0xff: not UTF-8
        {"after": "a" * 8193},
    ]
    for bad in bad_params:
        assert_error(client.get("/v1/documents", params=bad), 422, "invalid_request")


def test_a_listing_meets_each_document_once_while_others_change(client: TestClient):
    add(client, [{"id": f"d{i:02d}", "text": f"document {i}"} for i in range(12)])
    longest = "日" * 512  # the longest id: 1,536 bytes, a 2,048-character cursor
    add(client, [{"id": "théorème", "text": "Not ASCII."}, {"id": longest, "text": "Neither."}])
    seen: list[str] = []
    after = None
    for _ in range(20):  # 14 documents and at most 6 added: 7 pages of 3 at most
        params: dict[str, Any] = {"limit": 3, **({"after": after} if after else {})}
        page = client.get("/v1/documents", params=params).json()
        seen += [d["id"] for d in page["documents"]]
        # between pages: replace a listed and an unlisted document, delete one, add one
        replaced = [{"id": seen[0], "text": "new"}, {"id": "d11", "text": "new"}]
        add(client, [*replaced, {"id": f"late{len(seen)}", "text": "added"}])
        client.delete(f"/v1/documents/d{len(seen) + 3:02d}")
        after = page["next_cursor"]
        if after is None:
            break
    else:
        pytest.fail(f"the listing did not end: {seen}")
    assert len(seen) == len(set(seen))
    assert {"d00", "d01", "d02", "d11", "théorème", longest} <= set(seen)
    assert seen == sorted(seen, key=lambda i: i.encode())
    # the longest id's cursor leads on
    after_longest = "日" * 511 + "本"
    add(client, [{"id": after_longest, "text": "Last."}])
    everything = client.get("/v1/documents", params={"limit": 1000}).json()["documents"]
    before = [d["id"] for d in everything].index(longest)
    page = client.get("/v1/documents", params={"limit": before + 1}).json()
    assert page["documents"][-1]["id"] == longest and len(page["next_cursor"]) == 2048
    rest = client.get("/v1/documents", params={"after": page["next_cursor"]}).json()
    assert [d["id"] for d in rest["documents"]] == [after_longest]


def test_a_service_keeps_its_vectors_in_qdrant(
    make_app: Callable[..., FastAPI], make_client: Callable[..., TestClient], tmp_path: Path
):
    """With ``qdrant_url``, a new index puts its vectors in a Qdrant collection (here
    qdrant-client's embedded mode): writes, deletes and searches go through it, no FAISS file
    is written, and a read-only replica reached through the same URL answers alike."""
    folder, qdrant = tmp_path / "index", str(tmp_path / "qdrant")
    # embedded mode admits one client at a time: the writer shuts down (closing its
    # client) before the replica starts
    with TestClient(make_app(index=folder, qdrant_url=qdrant)) as writer:
        wait_ready(writer)
        add(writer)
        assert writer.delete("/v1/documents/market").status_code == 200
        expected = search(writer, top_n=10)["results"]
    assert {hit["id"] for hit in expected} == {d["id"] for d in CORPUS} - {"market"}
    manifest = Manifest.load(folder)
    assert (manifest.vectors_backend, manifest.qdrant_location) == ("qdrant", qdrant)
    assert not list(folder.glob("vectors-*"))

    replica = make_client(index=folder, read_only=True, qdrant_url=qdrant)
    assert search(replica, top_n=10)["results"] == expected


def test_a_qdrant_outage_answers_503_and_loses_no_acknowledged_write(
    make_client: Callable[..., TestClient], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """While Qdrant fails, searches and writes answer 503 ``vector_store_unavailable`` with
    Retry-After, the service stays up, and once Qdrant is back a retried write lands."""
    client = make_client(index=tmp_path / "index", qdrant_url=str(tmp_path / "qdrant"))
    add(client, CORPUS[:2])
    qdrant = service_state(client).runtime.engine.index.reader.vectors._client
    calls = {name: getattr(qdrant, name) for name in ("query_batch_points", "upsert")}

    def down(*args: object, **kwargs: object) -> None:
        raise ConnectionError("qdrant is down")

    for name in calls:
        monkeypatch.setattr(qdrant, name, down)
    failed = client.post("/v1/search", json={"query": "magnifying lens"})
    assert_error(failed, 503, "vector_store_unavailable")
    assert failed.headers["Retry-After"] == "5"
    written = client.post("/v1/documents", json={"documents": CORPUS[2:3]})
    assert_error(written, 503, "vector_store_unavailable")
    assert client.get("/health").status_code == 200
    for name, call in calls.items():
        monkeypatch.setattr(qdrant, name, call)
    add(client, CORPUS[2:3])  # the client retries
    found = {hit["id"] for hit in search(client, top_n=10)["results"]}
    assert found == {d["id"] for d in CORPUS[:3]}


def test_a_shutdown_with_qdrant_down_closes_and_the_next_start_catches_up(
    make_app: Callable[..., FastAPI],
    make_client: Callable[..., TestClient],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    """The shutdown snapshot fails while Qdrant is down; the service still shuts down and
    closes its index, and the next start serves every acknowledged document."""
    folder, qdrant_path = tmp_path / "index", str(tmp_path / "qdrant")
    with TestClient(make_app(index=folder, qdrant_url=qdrant_path)) as writer:
        wait_ready(writer)
        add(writer, CORPUS[:2])
        before = Manifest.load(folder).max_key
        qdrant = service_state(writer).runtime.engine.index.reader.vectors._client

        def down(*args: object, **kwargs: object) -> None:
            raise ConnectionError("qdrant is down")

        monkeypatch.setattr(qdrant, "count", down)
    assert Manifest.load(folder).max_key == before  # no snapshot was written
    monkeypatch.undo()
    restarted = make_client(index=folder, qdrant_url=qdrant_path)
    assert {hit["id"] for hit in search(restarted, top_n=10)["results"]} == {
        d["id"] for d in CORPUS[:2]
    }


def test_a_reload_waits_out_an_unreachable_vector_store(
    make_app: Callable[..., FastAPI],
    make_client: Callable[..., TestClient],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    """A rebuilt generation whose vector store cannot be reached yet is tried again at the
    next check (not given up, as a generation that fails to open is)."""
    import service.loading
    from index.errors import VectorStoreUnavailableError

    folder = tmp_path / "index"
    with TestClient(make_app(index=folder)) as writer:
        wait_ready(writer)
        add(writer, CORPUS[:2])
    replica = make_client(index=folder, read_only=True, index_reload_s=0.05)
    first = replica.get("/ready").json()["index_generation"]
    open_read_only = service.loading.open_read_only
    attempts: list[int] = []

    def unreachable_twice(settings: Any) -> Any:
        attempts.append(1)
        if len(attempts) <= 2:
            raise VectorStoreUnavailableError("cannot use Qdrant at http://qdrant:6333")
        return open_read_only(settings)

    monkeypatch.setattr(service.loading, "open_read_only", unreachable_twice)
    with TestClient(make_app(index=folder)) as writer:
        wait_ready(writer)
        add(writer, CORPUS[2:])
    deadline = time.monotonic() + 20
    while replica.get("/ready").json()["index_generation"] == first:
        assert time.monotonic() < deadline, "the replica gave the generation up"
        time.sleep(0.05)
    assert len(attempts) == 3
    assert replica.get("/ready").json()["documents"] == len(CORPUS)


def test_a_read_only_replica_serves_a_rebuilt_index_without_a_restart(
    make_app: Callable[..., FastAPI],
    make_client: Callable[..., TestClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    """A read-only replica notices that a new manifest replaced the one it serves (here the
    writing service's shutdown snapshot) and serves the new index: its documents and its
    generation; a manifest that fails to open leaves the replica serving what it had."""
    folder = tmp_path / "index"

    def write(documents: list[dict[str, Any]]) -> None:
        with TestClient(make_app(index=folder)) as writer:
            wait_ready(writer)
            add(writer, documents)

    def served(replica: TestClient) -> set[str]:
        return {hit["id"] for hit in search(replica, top_n=10)["results"]}

    write(CORPUS[:2])
    replica = make_client(index=folder, read_only=True, index_reload_s=0.05)
    first = replica.get("/ready").json()["index_generation"]
    assert served(replica) == {CORPUS[0]["id"], CORPUS[1]["id"]}

    write(CORPUS[2:])
    deadline = time.monotonic() + 20
    while replica.get("/ready").json()["index_generation"] == first:
        assert time.monotonic() < deadline, "the replica never reloaded"
        time.sleep(0.05)
    assert served(replica) == {d["id"] for d in CORPUS}
    assert replica.get("/ready").json()["documents"] == len(CORPUS)
    new_generation = replica.get("/ready").json()["index_generation"]
    metrics = replica.get("/metrics").text
    assert f'loupe_index_info{{generation="{new_generation}"}} 1.0' in metrics
    assert 'loupe_index_reloads_total{outcome="served"} 1.0' in metrics

    second = replica.get("/ready").json()["index_generation"]
    import service.loading

    opened: list[object] = []
    open_read_only = service.loading.open_read_only

    def counting(settings: Any) -> Any:
        opened.append(settings)
        return open_read_only(settings)

    monkeypatch.setattr(service.loading, "open_read_only", counting)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(generation="broken", docstore_file="docstore-missing.sqlite")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="service.state"):
        time.sleep(0.5)  # ten reload intervals
    assert replica.get("/ready").json()["index_generation"] == second
    assert served(replica) == {d["id"] for d in CORPUS}
    warnings = [r for r in caplog.records if "not served" in r.getMessage()]
    assert len(warnings) == 1 and "docstore-missing.sqlite" in warnings[0].getMessage()
    assert len(opened) == 1  # a generation that failed is not opened again
    metrics = replica.get("/metrics").text
    assert 'loupe_index_reloads_total{outcome="failed"} 1.0' in metrics
    assert f'loupe_index_info{{generation="{second}"}} 1.0' in metrics


def test_read_only_replicas_serve_the_index_and_refuse_writes(
    make_client: Callable[..., TestClient], tiny_models, tmp_path: Path, monkeypatch
):
    """Two read-only services over the folder a writable one filled answer searches, reads
    and listings as it did, say so on /ready, and answer every document write 403 before
    any work; a read-only service over a folder with no index fails to load, saying why."""
    folder = tmp_path / "shared-index"
    writer = make_client(index=folder)
    add(writer)
    expected = search(writer, top_n=3)["results"]
    listing = writer.get("/v1/documents").json()
    writer.close()  # its shutdown snapshot; replicas never write one

    replicas = [make_client(index=folder, read_only=True) for _ in range(2)]
    for replica in replicas:
        assert replica.get("/ready").json()["read_only"] is True
        assert search(replica, top_n=3)["results"] == expected
        assert replica.get("/v1/documents").json() == listing
        assert replica.get(f"/v1/documents/{CORPUS[0]['id']}").status_code == 200
        writes = [
            replica.post("/v1/documents", json={"documents": [{"id": "n", "text": "new"}]}),
            replica.post("/v1/documents/delete", json={"ids": [CORPUS[0]["id"]]}),
            replica.delete(f"/v1/documents/{CORPUS[0]['id']}"),
        ]
        for response in writes:
            assert_error(response, 403, "read_only")
        assert search(replica, top_n=3)["results"] == expected
    # refused before any work: the new document is never encoded
    encoder, _ = tiny_models
    passes = count_passes(encoder, monkeypatch)
    refused = replicas[0].post("/v1/documents", json={"documents": [{"id": "m", "text": "x"}]})
    assert_error(refused, 403, "read_only")
    assert passes == []

    empty = make_client(index=tmp_path / "nothing", read_only=True, ready=False)
    for _ in range(200):
        health = empty.get("/health")
        if health.status_code == 503:
            break
        time.sleep(0.02)
    assert "holds no index" in health.json()["error"]["message"]


def test_delete_many_by_ids_and_by_filter(client: TestClient):
    add(client)
    add(
        client,
        [{"id": f"t{i}", "text": f"tenant doc {i}", "metadata": {"t": i % 2}} for i in range(6)],
    )
    delete = lambda body: client.post("/v1/documents/delete", json=body)  # noqa: E731
    response = delete({"ids": ["banana", "lens", "nope", "banana"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"deleted": 2, "missing": ["nope"], "total_documents": 9}
    # a filter seen by a search first: the kept keys must follow the deletion
    assert len(search(client, filter={"t": 1}, top_n=10)["results"]) == 3
    response = delete({"filter": {"t": 1}})
    assert response.json() == {"deleted": 3, "total_documents": 6}
    assert search(client, filter={"t": 1}, top_n=10)["results"] == []
    assert delete({"filter": {"t": 1}}).json() == {"deleted": 0, "total_documents": 6}
    assert delete({"filter": {"t": {"lt": 0}}}).json() == {"deleted": 0, "total_documents": 6}
    ids = {r["id"] for r in search(client, candidates=20, top_n=20)["results"]}
    assert ids == {"loupe", "market", "a/b c", "t0", "t2", "t4"}
    bad_bodies: list[dict[str, Any]] = [
        {},
        {"ids": ["a"], "filter": {"t": 0}},
        {"ids": []},
        {"ids": [" "]},
        {"filter": {}},
    ]
    for bad in bad_bodies:
        assert_error(delete(bad), 422, "invalid_request")


def test_rerank_takes_indexed_documents_by_id(client: TestClient):
    add(client)
    full = {d["id"]: f"{d['title']} {d['text']}" if d.get("title") else d["text"] for d in CORPUS}
    by_id = [{"id": "loupe"}, "A plain text.", {"id": "banana"}]
    by_text = [full["loupe"], "A plain text.", full["banana"]]
    body = {"query": "magnifying lens", "return_documents": True}
    answers = [client.post("/v1/rerank", json={**body, "documents": d}) for d in (by_id, by_text)]
    assert [a.status_code for a in answers] == [200, 200], answers[0].text
    ids, texts = (a.json()["results"] for a in answers)
    assert ids == texts  # the same order, scores and echoed texts
    missing = client.post("/v1/rerank", json={**body, "documents": [{"id": "nope"}, "x"]})
    assert "documents.0: no 'text'" in assert_error(missing, 422)["message"]
    with_text = [{"id": "nope", "text": "its own text"}, {"id": 7, "text": "a number id"}]
    answer = client.post("/v1/rerank", json={**body, "documents": with_text})
    assert answer.status_code == 200, answer.text  # a text given is the text scored


def test_search_pages_with_offset(client: TestClient):
    add(client)
    whole = [h["id"] for h in search(client, top_n=5, candidates=5)["results"]]
    assert len(whole) == 5
    pages = [
        [h["id"] for h in search(client, top_n=2, offset=offset, candidates=5)["results"]]
        for offset in (0, 2, 4, 6)
    ]
    assert pages == [whole[:2], whole[2:4], whole[4:], []]
    from service.client import _Calls

    sent = _Calls.search("q", 2, 5, True, True, offset=2).json  # the Python client's body
    assert sent is not None and sent["offset"] == 2
    assert "offset" not in (_Calls.search("q", 2, 5, True, True).json or {})
    too_far = client.post("/v1/search", json={"query": "q", "top_n": 10, "offset": 995})
    assert "offset + top_n" in assert_error(too_far, 413, "too_many")["message"]
    assert_error(client.post("/v1/search", json={"query": "q", "offset": -1}), 422)


def test_search_filtered_by_metadata(client: TestClient):
    add(
        client,
        [
            {
                "id": f"{topic}-{i}",
                "text": f"{topic} item {i}",
                "metadata": {"topic": topic, "i": i},
            }
            for topic in ("food", "tools", "news")
            for i in range(4)
        ],
    )

    def ids(**body: Any) -> list[str]:
        return [hit["id"] for hit in search(client, top_n=20, **body)["results"]]

    assert len(ids()) == 12
    assert sorted(ids(filter={"topic": "food"})) == [f"food-{i}" for i in range(4)]
    assert sorted(ids(filter={"topic": ["food", "news"], "i": 2})) == ["food-2", "news-2"]
    assert ids(filter={"topic": "food", "i": "2"}) == []  # a string does not match 2
    assert ids(filter={"topic": "sport"}) == []
    assert sorted(ids(filter={"topic": "food", "i": {"gte": 1, "lt": 3}})) == ["food-1", "food-2"]
    assert sorted(ids(filter={"i": {"gt": 2}})) == ["food-3", "news-3", "tools-3"]
    assert sorted(ids(filter={"topic": {"gte": "news"}})) == [
        f"{t}-{i}" for t in ("news", "tools") for i in range(4)
    ]
    for stage in ("lexical", "hybrid"):
        assert sorted(ids(filter={"i": {"lte": 0}}, first_stage=stage, query="item")) == [
            "food-0",
            "news-0",
            "tools-0",
        ]
    unranked = ids(filter={"topic": "tools"}, rerank=False)
    assert sorted(unranked) == [f"tools-{i}" for i in range(4)]
    post = lambda body: client.post("/v1/search", json={"query": "q", **body})  # noqa: E731
    bad_filters: list[object] = [
        {},
        {"topic": {"$ne": "f"}},
        {"topic": []},
        {"topic": None},
        "f",
        {"i": {"gt": True}},
    ]
    for bad in bad_filters:
        message = assert_error(post({"filter": bad}), 422, "invalid_request")["message"]
        if isinstance(bad, dict):  # a listing's JSON filter is told what a body's is told
            listed = client.get("/v1/documents", params={"filter": json.dumps(bad)})
            assert assert_error(listed, 422)["message"] in message

    # filtered and unfiltered requests merged into one batch each get their own hits
    engine = service_state(client).runtime.engine
    food = MetadataFilter.from_mapping({"topic": "food"})
    jobs = [SearchJob("item", 20, where=food), SearchJob("item", 20), SearchJob("item", 3)]
    merged = engine.search_many(jobs)
    for job, outcome in zip(jobs, merged, strict=True):
        alone = engine.search_many([job])[0]
        assert [h.document.id for h in outcome.hits] == [h.document.id for h in alone.hits]
    assert [len(o.hits) for o in merged] == [4, 12, 3]


def test_search_lexical_and_hybrid_first_stages(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
):
    """The full-text index sees documents the moment they are added, replaced or deleted;
    hybrid keeps what either first stage finds."""
    add(client)

    def ids(query: str, **body: Any) -> list[str]:
        answer = search(client, query=query, top_n=10, **body)
        return [hit["id"] for hit in answer["results"]]

    assert ids("bananas fruit", first_stage="lexical", rerank=False) == ["banana"]
    add(client, [{"id": "banana", "text": "A yellow curved fruit"}])  # title gone
    assert ids("bananas", first_stage="lexical") == []
    assert ids("curved", first_stage="lexical") == ["banana"]
    assert ids("lens focuses light", first_stage="lexical") == ["lens"]
    client.delete("/v1/documents/lens")
    assert ids("lens focuses light", first_stage="lexical") == []
    hybrid = ids("curved", first_stage="hybrid", rerank=False)  # found by both: first
    assert hybrid[0] == "banana" and sorted(hybrid) == ["a/b c", "banana", "loupe", "market"]
    assert ids("loupe", first_stage="lexical", filter={"n": 1}) == ["loupe"]
    assert ids("loupe", first_stage="lexical", filter={"n": 2}) == []
    engine = service_state(client).runtime.engine
    jobs = [
        SearchJob("yellow fruit", 5, first_stage="lexical"),
        SearchJob("yellow fruit", 5, first_stage="hybrid"),
        SearchJob("yellow fruit", 5),
        SearchJob("yellow fruit", 5, rerank=False, first_stage="lexical"),
    ]
    for job, outcome in zip(jobs, engine.search_many(jobs), strict=True):
        alone = engine.search_many([job])[0]
        assert [h.document.id for h in outcome.hits] == [h.document.id for h in alone.hits]
        assert [h.score for h in outcome.hits] == pytest.approx([h.score for h in alone.hits])
    # a lexical search that is not re-ranked never runs the query encoder
    with monkeypatch.context() as patch:
        patch.setattr(engine, "_encode_search_queries", None)
        assert [h.document.id for h in engine.search_many([jobs[3]])[0].hits] == ["banana"]
    bad = client.post("/v1/search", json={"query": "q", "first_stage": "bm25"})
    assert_error(bad, 422, "invalid_request")
    engine.index.docstore.has_lexical = False  # as with an SQLite built without FTS5
    refused = client.post("/v1/search", json={"query": "q", "first_stage": "hybrid"})
    assert "FTS5" in assert_error(refused, 422)["message"]
    assert search(client, query="q")["results"]  # dense still answers


def test_search_bad_inputs(client: TestClient):
    post = lambda body: client.post("/v1/search", json=body)  # noqa: E731
    assert_error(post({"query": ""}), 422, "invalid_request")
    assert_error(post({"query": "q", "top_n": 0}), 422, "invalid_request")
    assert_error(post({"query": "q", "rerank": "yes please"}), 422, "invalid_request")
    assert_error(post({"query": "q", "k": 3}), 422, "invalid_request")
    assert_error(post({"query": "q", "candidates": 5000}), 413, "too_many")
    assert_error(post({"query": "x" * 1_000_000}), 413, "text_too_long")


def test_lite_reranker_stores_token_matrices_of_added_documents(
    make_client: Callable[..., TestClient], tiny_models, tmp_path
):
    """Documents added through the API keep the LITE model's token matrices, so search
    re-ranks them from storage with the same scores as encoding their texts."""
    from models.late_interaction import LateInteractionConfig, LateInteractionModel
    from models.late_reranker import LateInteractionReranker
    from models.lite import ScorerConfig

    encoder, _ = tiny_models
    config = LateInteractionConfig(
        dim=8, q_len=8, d_len=32, scorer=ScorerConfig(kind="sorted", q_len=8, d_len=32)
    )
    folder = LateInteractionModel(config, encoder).save(tmp_path / "lite")
    reranker = LateInteractionReranker(LateInteractionModel.load(folder, device="cpu"))
    client = make_client(reranker=reranker)
    add(client)
    body = search(client, top_n=5, candidates=5)
    texts = {d["id"]: d["text"] for d in CORPUS}
    expected = reranker.score("magnifying lens", [texts[r["id"]] for r in body["results"]])
    got = [r["score"] for r in body["results"]]
    assert got == pytest.approx([float(x) for x in expected], abs=0.05)  # float16 storage
    assert got == sorted(got, reverse=True)
    reader = service_state(client).runtime.engine.index.reader
    keys = [reader.docstore.get(d["id"]).key for d in CORPUS]
    assert all(m is not None for m in reader.token_matrices(keys, reranker.model.fingerprint))

    # doc2query queries in the metadata: the first stage indexes them, the re-ranker does not
    expanded = {"id": "cat", "text": "Cats purr.", "metadata": {"doc2query": ["why felines"]}}
    add(client, [expanded])
    (key,) = [reader.docstore.get("cat").key]
    _, (vector,) = reader.docstore.vectors_for_keys([key])
    np.testing.assert_allclose(vector, encoder.encode(["Cats purr. why felines"])[0], atol=1e-5)
    (matrix,) = reader.token_matrices([key], reranker.model.fingerprint)
    assert matrix is not None
    np.testing.assert_allclose(
        matrix, reranker.model.document_matrices(["Cats purr."])[0], atol=0.05
    )
    assert [h["id"] for h in search(client, query="felines", first_stage="lexical")["results"]] == [
        "cat"
    ]


def count_passes(encoder: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that each of the encoder's transformer passes appends its batch size to."""
    passes: list[int] = []
    original = encoder.forward_tokens

    def counting(batch: Any) -> Any:
        passes.append(len(batch["input_ids"]))
        return original(batch)

    monkeypatch.setattr(encoder, "forward_tokens", counting)
    return passes


def shared_encoder_reranker(encoder: Any, folder: Path) -> Any:
    """A MaxSim re-ranker (8-d, 8 query tokens) saved under ``folder`` and loaded on the
    service's own encoder, so the first stage's pass can give its query matrices."""
    from models.late_interaction import LateInteractionConfig, LateInteractionModel
    from models.late_reranker import LateInteractionReranker
    from models.lite import ScorerConfig

    config = LateInteractionConfig(
        dim=8, q_len=8, d_len=32, scorer=ScorerConfig(kind="maxsim", q_len=8, d_len=32)
    )
    saved = LateInteractionModel(config, encoder).save(folder / "lite")
    return LateInteractionReranker(
        LateInteractionModel.load(saved, device="cpu", share_encoder=encoder)
    )


def test_rerank_scores_indexed_documents_from_their_stored_matrices(
    make_client: Callable[..., TestClient], tiny_models, tmp_path, monkeypatch
) -> None:
    """A document sent to /v1/rerank that the index holds (the same full text) is not
    encoded again: it scores as /v1/search scores it; the others are encoded."""
    from models.array_cache import ArrayCache

    reranker = shared_encoder_reranker(tiny_models[0], tmp_path)
    client = make_client(reranker=reranker)
    texts = [d["text"] for d in CORPUS]
    titled = {"id": "titled", "title": "Lenses", "text": "A hand lens magnifies."}
    add(client, [*CORPUS[:3], titled])  # the titled one's full text is another
    monkeypatch.setattr(reranker, "cache", ArrayCache(1 << 20))  # empty: the index alone
    encoded: list[str] = []
    real = reranker.model.document_matrices

    def document_matrices(batch: list[str], *args: Any, **kwargs: Any) -> Any:
        encoded.extend(batch)
        return real(batch, *args, **kwargs)

    monkeypatch.setattr(reranker.model, "document_matrices", document_matrices)
    banana_full = "Fruit Bananas are yellow fruit."  # title and text, as indexed
    sent = [*texts, titled["text"], banana_full]
    response = client.post("/v1/rerank", json={"query": "magnifying lens", "documents": sent})
    assert response.status_code == 200, response.text
    # banana's text without its title, and what the index lacks, are encoded
    assert encoded == [texts[1], *texts[3:], titled["text"]]
    reranked = {sent[r["index"]]: r["relevance_score"] for r in response.json()["results"]}
    hits = search(client, candidates=4, top_n=4)["results"]
    assert {h["id"] for h in hits} == {*(d["id"] for d in CORPUS[:3]), "titled"}
    for hit in hits:
        if hit["id"] != "titled":
            full = f"{hit['title']} {hit['text']}" if hit.get("title") else hit["text"]
            assert reranked[full] == pytest.approx(hit["score"], abs=1e-6)
    encoded.clear()  # sent again: every matrix from the document cache now
    client.post("/v1/rerank", json={"query": "magnifying lens", "documents": sent})
    assert encoded == []


def test_search_runs_the_transformer_once_when_the_reranker_shares_the_encoder(
    make_client: Callable[..., TestClient], tiny_models, tmp_path, monkeypatch
):
    """The first stage's pass over the query also gives the re-ranker's query matrix (same
    encoder, query within q_len): one transformer pass per search, scores unchanged."""
    encoder, _ = tiny_models
    reranker = shared_encoder_reranker(encoder, tmp_path)
    client = make_client(reranker=reranker)
    add(client)
    passes: list[int] = []
    original = encoder.forward_tokens

    def counting(batch: object) -> object:
        passes.append(1)
        return original(batch)

    monkeypatch.setattr(encoder, "forward_tokens", counting)
    body = search(client, top_n=5, candidates=5)
    assert len(passes) == 1
    reader = service_state(client).runtime.engine.index.reader
    keys = [reader.docstore.get(r["id"]).key for r in body["results"]]
    stored = reader.token_matrices(keys, reranker.model.fingerprint)
    expected = reranker.score_stored("magnifying lens", stored)  # encodes the query itself
    assert [r["score"] for r in body["results"]] == pytest.approx(
        [float(x) for x in expected], abs=1e-4
    )


def test_repeated_queries_come_from_the_query_cache(
    make_client: Callable[..., TestClient], tiny_models, tmp_path, monkeypatch
):
    """A query searched before runs no transformer pass (its vector and, with a re-ranker
    on the same encoder, its re-ranker matrix are cached, also for a query longer than the
    re-ranker reads) and gets the same hits and scores; repeats within one batch are encoded
    once; query_cache_mb=0 turns it off."""
    from models.array_cache import ArrayCache

    encoder, _ = tiny_models
    reranker = shared_encoder_reranker(encoder, tmp_path)
    passes = count_passes(encoder, monkeypatch)
    cached = make_client(reranker=reranker, index=tmp_path / "cached")
    uncached = make_client(reranker=reranker, index=tmp_path / "uncached", query_cache_mb=0)
    for client in (cached, uncached):
        add(client)
    long_query = "magnifying " * 12  # beyond q_len: the re-ranker encodes it itself

    def passes_for(client: TestClient, **body: Any) -> tuple[int, list[tuple[str, float]]]:
        passes.clear()
        hits = search(client, top_n=5, candidates=5, **body)["results"]
        return len(passes), [(h["id"], h["score"]) for h in hits]

    first = passes_for(cached)
    assert first[0] == 1 and passes_for(cached) == (0, first[1])
    assert passes_for(uncached) == first and passes_for(uncached) == first
    # a vector cached without a re-ranker matrix: re-ranking it needs the re-ranker's pass,
    # once
    unranked = passes_for(cached, query="loupe", rerank=False)
    assert unranked[0] == 1 and passes_for(cached, query="loupe", rerank=False) == (0, unranked[1])
    ranked = passes_for(cached, query="loupe")
    assert ranked[0] == 1 and passes_for(cached, query="loupe") == (0, ranked[1])
    # a long query takes two passes (the re-ranker reads it cut to its q_len), then none
    long_hits = passes_for(cached, query=long_query)
    assert long_hits[0] == 2 and passes_for(cached, query=long_query) == (0, long_hits[1])
    assert passes_for(uncached, query=long_query) == long_hits

    engine = service_state(cached).runtime.engine
    assert list(engine.caches()) == ["query"]  # this re-ranker has no document cache
    assert "query" not in service_state(uncached).runtime.engine.caches()
    reranker.cache = ArrayCache(1 << 20)
    assert list(engine.caches()) == ["query", "document"]
    reranker.cache = None
    jobs = [SearchJob("magnifying lens", 5), SearchJob("fruit", 5), SearchJob("fruit", 5)]
    passes.clear()
    together = engine.search_many(jobs)
    assert passes == [1]  # "fruit" once; "magnifying lens" from the cache
    alone = [engine.search_many([job])[0] for job in jobs]
    for merged, single in zip(together, alone, strict=True):
        assert [(h.document.id, h.score) for h in merged.hits] == [
            (h.document.id, h.score) for h in single.hits
        ]


def test_rerank_reads_and_fills_the_query_cache(
    make_client: Callable[..., TestClient], tiny_models, tmp_path, monkeypatch
):
    """/v1/rerank takes a query's re-ranker matrix from the query cache (a search of it, or an
    earlier re-rank, put it there) and scores as it does without the cache; with the
    documents in the document cache too, a repeated re-rank runs no transformer pass."""
    from models.array_cache import ArrayCache

    encoder, _ = tiny_models
    reranker = shared_encoder_reranker(encoder, tmp_path)
    reranker.cache = ArrayCache(1 << 22)  # the documents' matrices: shared by both clients
    passes = count_passes(encoder, monkeypatch)
    cached = make_client(reranker=reranker, index=tmp_path / "cached")
    uncached = make_client(reranker=reranker, index=tmp_path / "uncached", query_cache_mb=0)
    add(cached)
    documents = [d["text"] for d in CORPUS]

    def rerank(client: TestClient, query: str) -> tuple[int, list[tuple[int, float]]]:
        passes.clear()
        response = client.post("/v1/rerank", json={"query": query, "documents": documents})
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        return len(passes), [(r["index"], r["relevance_score"]) for r in results]

    first = rerank(cached, "magnifying lens")
    assert first[0] == 2  # the documents, then the query
    assert rerank(cached, "magnifying lens") == (0, first[1])
    assert rerank(uncached, "magnifying lens") == (1, first[1])  # its query, every time
    assert rerank(uncached, "magnifying lens") == (1, first[1])
    # a query searched first: the search's pass gave its matrix
    search(cached, query="fruit", top_n=3)
    assert rerank(cached, "fruit") == (0, rerank(uncached, "fruit")[1])
    # a query longer than the re-ranker reads: encoded once by the re-ranker, then kept
    long_query = "magnifying " * 12
    long_first = rerank(cached, long_query)
    assert long_first[0] == 1 and rerank(cached, long_query) == (0, long_first[1])
    assert rerank(uncached, long_query)[1] == long_first[1]


def test_a_query_cache_too_small_for_any_entry_still_serves(
    make_client: Callable[..., TestClient], tiny_models, tmp_path
):
    """With a cache that holds nothing (every entry is larger than it), searches still
    answer, as they do with no cache."""
    from models.array_cache import ArrayCache

    encoder, _ = tiny_models
    client = make_client(reranker=shared_encoder_reranker(encoder, tmp_path))
    add(client)
    service_state(client).runtime.engine.query_cache = ArrayCache(8)
    first = search(client, top_n=3)["results"]
    assert first and search(client, top_n=3)["results"] == first
    assert search(client, query="magnifying " * 12, top_n=3)["results"]


def test_an_approximate_index_searches_as_the_settings_say(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(index_factory="HNSW8", ef_search=300)
    add(client)
    vectors = service_state(client).runtime.engine.index.reader.vectors
    assert vectors.search_params() == {"ef_search": 300}
    assert [r["id"] for r in search(client, top_n=5, candidates=5)["results"]]


@pytest.mark.parametrize("late_interaction", [False, True], ids=["cosine", "late interaction"])
def test_documents_sent_again_unchanged_are_not_encoded_again(
    make_client: Callable[..., TestClient],
    tiny_models,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    late_interaction: bool,
) -> None:
    """Re-sending a corpus to change its metadata runs no model pass: each unchanged
    document keeps its stored vector (and re-ranker matrix); a changed text is encoded."""
    encoder, _ = tiny_models
    reranker = shared_encoder_reranker(encoder, tmp_path) if late_interaction else None
    client = make_client(reranker=reranker)
    add(client)
    before = search(client, top_n=5, candidates=5)["results"]
    passes = count_passes(encoder, monkeypatch)
    retagged = [{**d, "metadata": {"tag": "new"}} for d in CORPUS]
    add(client, retagged)
    assert passes == []
    assert client.get("/v1/documents/lens").json()["metadata"] == {"tag": "new"}
    after = search(client, top_n=5, candidates=5)["results"]
    assert [h["id"] for h in after] == [h["id"] for h in before]
    assert [h["score"] for h in after] == pytest.approx([h["score"] for h in before], abs=1e-4)
    assert len(search(client, filter={"tag": "new"}, top_n=10)["results"]) == len(CORPUS)
    changed = [{**CORPUS[2], "text": "A lens bends light."}, *retagged[:2]]
    add(client, changed)
    assert passes and sum(passes) == 1  # the changed text alone
    metrics = client.get("/metrics").text
    assert f'loupe_documents_written_total{{encodings="kept"}} {len(CORPUS) + 2}.0' in metrics
    assert f'loupe_documents_written_total{{encodings="encoded"}} {len(CORPUS) + 1}.0' in metrics
    expected = encoder.encode(["A lens bends light."])[0]
    reader = service_state(client).runtime.engine.index.reader
    _, (stored,) = reader.docstore.vectors_for_keys([reader.docstore.get("lens").key])
    np.testing.assert_allclose(stored, expected, atol=1e-5)


def test_another_encoder_encodes_documents_sent_again(
    make_settings: Callable[..., Any], tiny_models, tmp_path: Path
) -> None:
    """Re-sending documents is how an index's vectors get a new encoder's: a service whose
    encoder is not the one the index records encodes them, and the index is then recorded
    as mixed, so that no encoder reuses its vectors."""
    from index.records import Document
    from models.encoder import EncoderConfig, TextEncoder
    from service.engine import Engine
    from service.loading import open_index
    from tests.conftest import build_tiny_bert

    first, reranker = tiny_models
    other = TextEncoder(
        EncoderConfig(model=str(build_tiny_bert(tmp_path / "other", seed=1)), device="cpu")
    )
    settings = make_settings(index=tmp_path / "index")

    def engine(encoder: Any) -> Engine:
        return Engine(encoder, reranker, open_index(settings, encoder.model_name, encoder.dim))

    cats = Document("cats", "Cats purr.")
    with_first = engine(first)
    assert with_first.reuses_encodings
    with_first.add_documents([cats])
    with_first.close()
    with_other = engine(other)
    assert not with_other.reuses_encodings
    with_other.add_documents([cats])
    docstore = with_other.index.docstore
    row = docstore.get("cats")
    assert row is not None
    stored = docstore.vectors_for_keys([row.key])[1][0]
    np.testing.assert_allclose(stored, other.encode([cats.text])[0], atol=1e-5)
    with_other.close()
    again = engine(first)
    assert not again.reuses_encodings
    again.close()
