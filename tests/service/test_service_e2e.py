"""End to end: a real uvicorn server on a free loopback port, the Python clients, Cohere's SDK."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import pytest

from service.client import AsyncLoupeClient, LoupeClient, LoupeError
from service.routers.embed_encoding import to_int8, to_ubinary
from tests.service.helpers import wait_url_ready

CORPUS = [
    {"id": f"doc-{i}", "text": text, "metadata": {"i": i}}
    for i, text in enumerate(
        [
            "A loupe is a small magnification device used by jewellers.",
            "Bananas are an excellent source of potassium.",
            "Late interaction models compare query and document tokens.",
            "FAISS searches dense vectors quickly.",
            "The weather in Lisbon is mild in winter.",
            "Re-ranking reorders first-stage candidates by relevance.",
        ]
    )
]


def test_server_end_to_end(live_server):
    server = live_server(api_key="k")
    assert httpx.get(f"{server.url}/health").json()["status"] in ("loading", "ok")
    wait_url_ready(server.url)
    with LoupeClient(server.url, api_key="k") as client:
        assert client.ready() and client.health().status == "ok"
        added = client.add_documents(CORPUS)
        assert added.upserted == len(CORPUS) and added.total_documents == len(CORPUS)

        found = client.search("how do rerankers reorder candidates", top_n=4, candidates=6)
        assert len(found.results) == 4
        scores = [hit.score for hit in found.results]
        assert scores == sorted(scores, reverse=True)
        by_id = {d["id"]: d for d in CORPUS}
        for hit in found.results:
            assert hit.text == by_id[hit.id]["text"]
            assert hit.metadata == by_id[hit.id]["metadata"]
        assert found.timings.total_ms > 0
        with pytest.raises(LoupeError) as refused:  # the tiny re-ranker is not calibrated
            client.search("rerankers", min_relevance_score=0.5)
        assert refused.value.status_code == 422 and "calibrated" in refused.value.message

        # re-ranking the same texts directly gives the same order and scores
        texts = [hit.text or "" for hit in found.results]
        reranked = client.rerank(
            "how do rerankers reorder candidates", texts, return_documents=True
        )
        assert [r.index for r in reranked.results] == [0, 1, 2, 3]
        assert [r.document.text for r in reranked.results if r.document] == texts
        for result, hit in zip(reranked.results, found.results, strict=True):
            assert result.relevance_score == pytest.approx(hit.score, abs=1e-5)
        assert reranked.usage.total_tokens > 0
        # the tiny cosine re-ranker reads no windows, so a cap on them changes nothing
        capped = client.rerank("how do rerankers reorder candidates", texts, max_chunks_per_doc=1)
        assert [r.index for r in capped.results] == [0, 1, 2, 3]

        assert len(client.embed(["a", "b"]).data) == 2
        assert [m.role for m in client.models().data] == ["reranker", "encoder"]
        assert client.get_document("doc-0").id == "doc-0"
        assert client.delete_document("doc-0").total_documents == len(CORPUS) - 1
        with pytest.raises(LoupeError) as missing:
            client.delete_document("doc-0")
        assert missing.value.status_code == 404 and missing.value.error_type == "not_found"
        first = client.list_documents(limit=4)
        assert [d.id for d in first.documents] == [f"doc-{i}" for i in range(1, 5)]
        rest = client.list_documents(after=first.next_cursor, include_text=True)
        assert [d.text for d in rest.documents] == [CORPUS[5]["text"]]
        assert rest.next_cursor is None
        odd = client.list_documents(filter={"i": [1, 3, 5]})
        assert [d.id for d in odd.documents] == ["doc-1", "doc-3", "doc-5"]
        every = [d.id for d in client.iter_documents(page_size=2)]
        assert every == [f"doc-{i}" for i in range(1, len(CORPUS))]
        assert [d.id for d in client.iter_documents(page_size=1, filter={"i": [1, 3]})] == [
            "doc-1",
            "doc-3",
        ]
        by_ids = client.delete_documents(ids=["doc-1", "doc-0"])
        assert (by_ids.deleted, by_ids.missing) == (1, ["doc-0"])
        by_filter = client.delete_documents(filter={"i": [2, 3]})
        assert (by_filter.deleted, by_filter.total_documents) == (2, len(CORPUS) - 4)

    with LoupeClient(server.url) as anonymous, pytest.raises(LoupeError) as denied:
        anonymous.search("x")
    assert denied.value.status_code == 401

    async def concurrent() -> tuple[list[list[str]], list[str]]:
        async with AsyncLoupeClient(server.url, api_key="k") as client:
            answers = await asyncio.gather(*(client.search("loupe", top_n=3) for _ in range(8)))
            listed = [d.id async for d in client.iter_documents(page_size=1)]
        return [[hit.id for hit in answer.results] for answer in answers], listed

    orders, listed = asyncio.run(concurrent())
    assert all(order == orders[0] for order in orders)  # batched or not, the same answer
    assert listed == ["doc-4", "doc-5"]  # what the deletes above left


def test_cohere_v2_sdk_against_the_server(live_server):
    cohere = pytest.importorskip("cohere")
    server = live_server(api_key="k")
    wait_url_ready(server.url)
    docs = [d["text"] for d in CORPUS]
    query = "what magnifies small things"
    direct = loupe_answer(
        server.url, "/v2/rerank", {"model": "rerank-v3.5", "query": query, "documents": docs}
    )

    client = cohere.ClientV2(api_key="k", base_url=server.url)
    response = client.rerank(model="rerank-v3.5", query=query, documents=docs, top_n=4)
    assert [r.index for r in response.results] == [r["index"] for r in direct["results"]][:4]
    for got, want in zip(response.results, direct["results"], strict=False):
        assert got.relevance_score == pytest.approx(want["relevance_score"], abs=1e-6)
    assert response.id and response.meta is not None
    assert response.meta.billed_units.search_units == 1

    full = client.rerank(model="rerank-v3.5", query=query, documents=docs, max_tokens_per_doc=64)
    assert [r.index for r in full.results] == [r["index"] for r in direct["results"]]

    wrong = cohere.ClientV2(api_key="wrong", base_url=server.url)
    with pytest.raises(cohere.errors.UnauthorizedError):
        wrong.rerank(model="rerank-v3.5", query=query, documents=docs)


def test_the_clients_send_both_cohere_caps() -> None:
    from service.client import _Calls

    call = _Calls.rerank("q", ["d"], None, False, 64, None, 2)
    assert call.json == {
        "query": "q",
        "documents": ["d"],
        "return_documents": False,
        "max_tokens_per_doc": 64,
        "max_chunks_per_doc": 2,
    }


def loupe_answer(url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """The service's own answer to ``body`` at ``path`` (the servers here take the key "k"),
    to compare an SDK's with."""
    answer = httpx.post(f"{url}{path}", json=body, headers={"Authorization": "Bearer k"})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def own_embeddings(url: str, texts: list[str]) -> dict[str, Any]:
    """Loupe's own /v1/embed answer for ``texts``."""
    return loupe_answer(url, "/v1/embed", {"input": texts})


def test_openai_sdk_embeddings_against_the_server(live_server):
    """OpenAI's SDK, pointed at the service, gets /v1/embed's vectors (it asks for base64 and
    decodes them itself); its key is the service's API key."""
    openai = pytest.importorskip("openai")
    server = live_server(api_key="k")
    wait_url_ready(server.url)
    texts = [d["text"] for d in CORPUS[:3]]
    direct = own_embeddings(server.url, texts)
    client = openai.OpenAI(api_key="k", base_url=f"{server.url}/v1")
    response = client.embeddings.create(model="any", input=texts)
    assert [d.index for d in response.data] == [0, 1, 2]
    for got, want in zip(response.data, direct["data"], strict=True):
        np.testing.assert_allclose(got.embedding, want["embedding"], atol=1e-6)
    assert response.usage.total_tokens == direct["usage"]["total_tokens"]
    single = client.embeddings.create(model="any", input=texts[0], encoding_format="float")
    np.testing.assert_allclose(single.data[0].embedding, direct["data"][0]["embedding"], atol=1e-6)
    wrong = openai.OpenAI(api_key="wrong", base_url=f"{server.url}/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.embeddings.create(model="any", input=texts)


def test_cohere_sdks_embed_against_the_server(live_server):
    """Cohere's v1 SDK posts its body to /v1/embed and its v2 SDK to /v2/embed: both get the
    vectors Loupe's own /v1/embed gives."""
    cohere = pytest.importorskip("cohere")
    server = live_server(api_key="k")
    wait_url_ready(server.url)
    texts = [d["text"] for d in CORPUS[:3]]
    expected = [d["embedding"] for d in own_embeddings(server.url, texts)["data"]]

    v1 = cohere.Client(api_key="k", base_url=server.url)
    floats = v1.embed(texts=texts, model="embed-english-v3.0", input_type="search_document")
    np.testing.assert_allclose(floats.embeddings, expected, atol=1e-6)
    assert floats.texts == texts

    v2 = cohere.ClientV2(api_key="k", base_url=server.url)
    by_type = v2.embed(
        texts=texts,
        model="embed-english-v3.0",
        input_type="search_query",
        embedding_types=["float"],
    )
    np.testing.assert_allclose(by_type.embeddings.float_, expected, atol=1e-6)
    compressed = v2.embed(
        texts=texts,
        model="m",
        input_type="search_query",
        embedding_types=["int8", "uint8", "binary", "ubinary"],
    ).embeddings
    np.testing.assert_array_equal(compressed.int8, to_int8(np.asarray(expected)))
    np.testing.assert_array_equal(compressed.uint8, np.asarray(compressed.int8) + 128)
    np.testing.assert_array_equal(compressed.ubinary, to_ubinary(np.asarray(expected)))
    np.testing.assert_array_equal(compressed.binary, np.asarray(compressed.ubinary) - 128)
    with pytest.raises(cohere.errors.UnprocessableEntityError):
        v2.embed(texts=texts, model="m", input_type="search_query", embedding_types=["int4"])
    wrong = cohere.ClientV2(api_key="wrong", base_url=server.url)
    with pytest.raises(cohere.errors.UnauthorizedError):
        wrong.embed(texts=texts, model="m", input_type="search_query")


def test_voyage_sdk_reranks_against_the_server(live_server):
    """Voyage AI's SDK posts its body (top_k, truncation) to /v1/rerank and reads Voyage's
    answer: the order and scores Cohere's shape gets."""
    voyageai = pytest.importorskip("voyageai")
    server = live_server(api_key="k")
    wait_url_ready(server.url)
    docs = [d["text"] for d in CORPUS]
    query = "what magnifies small things"
    body = {"query": query, "documents": docs}
    cohere_shaped = loupe_answer(server.url, "/v1/rerank", body)["results"]

    client = voyageai.Client(api_key="k", base_url=f"{server.url}/v1")
    answer = client.rerank(query, docs, model="rerank-2", top_k=3)
    assert [r.index for r in answer.results] == [r["index"] for r in cohere_shaped[:3]]
    for got, want in zip(answer.results, cohere_shaped, strict=False):
        assert got.relevance_score == pytest.approx(want["relevance_score"], abs=1e-6)
        assert got.document == docs[got.index]
    assert answer.total_tokens > 0
    wrong = voyageai.Client(api_key="wrong", base_url=f"{server.url}/v1")
    with pytest.raises(voyageai.error.AuthenticationError, match="invalid API key"):
        wrong.rerank(query, docs, model="rerank-2")
