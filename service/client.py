"""A small typed client for the Loupe API, sync and async, on httpx.

Example (against a running service)::

    with LoupeClient("http://127.0.0.1:8000", api_key="...") as client:
        client.add_documents([{"id": "d1", "text": "a jeweller's magnifier"}])
        best = client.search("what is a loupe", top_n=3).results[0]
        order = [r.index for r in client.rerank("loupe", ["a fruit", "a lens"]).results]
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import httpx
from pydantic import BaseModel

from service.schemas import (
    DeleteDocumentsResponse,
    DeleteResponse,
    DocumentIn,
    DocumentOut,
    DocumentsPage,
    DocumentsResponse,
    EmbedResponse,
    GenerateResponse,
    HealthResponse,
    ListedDocument,
    ModelsResponse,
    RerankResponse,
    SearchResponse,
)

M = TypeVar("M", bound=BaseModel)
DocumentLike = DocumentIn | Mapping[str, Any]


class LoupeError(RuntimeError):
    """An error answer from the service: HTTP status, error type and message."""

    def __init__(self, status_code: int, error_type: str, message: str):
        super().__init__(f"{status_code} {error_type}: {message}")
        self.status_code = status_code
        self.error_type = error_type
        self.message = message


@dataclass(frozen=True)
class _Call:
    """One API call: method, path and JSON body (built once for both clients)."""

    method: str
    path: str
    json: dict[str, Any] | None = None


def _drop_none(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


def _document_body(document: DocumentLike) -> dict[str, Any]:
    if isinstance(document, DocumentIn):
        return document.model_dump()
    return DocumentIn.model_validate(dict(document)).model_dump()


class _Calls:
    """Request builders shared by :class:`LoupeClient` and :class:`AsyncLoupeClient`."""

    @staticmethod
    def rerank(
        query: str,
        documents: Sequence[str],
        top_n: int | None,
        return_documents: bool,
        max_tokens_per_doc: int | None,
        model: str | None,
        max_chunks_per_doc: int | None = None,
    ) -> _Call:
        body = {
            "query": query,
            "documents": list(documents),
            "top_n": top_n,
            "return_documents": return_documents,
            "max_tokens_per_doc": max_tokens_per_doc,
            "max_chunks_per_doc": max_chunks_per_doc,
            "model": model,
        }
        return _Call("POST", "/v1/rerank", _drop_none(body))

    @staticmethod
    def search(
        query: str,
        top_n: int,
        candidates: int,
        rerank: bool,
        return_documents: bool,
        min_relevance_score: float | None = None,
        filter: Mapping[str, Any] | None = None,
        first_stage: str = "dense",
        offset: int = 0,
    ) -> _Call:
        body = {
            "query": query,
            "top_n": top_n,
            "offset": offset or None,
            "candidates": candidates,
            "rerank": rerank,
            "return_documents": return_documents,
            "min_relevance_score": min_relevance_score,
            "filter": dict(filter) if filter is not None else None,
            "first_stage": first_stage,
        }
        return _Call("POST", "/v1/search", _drop_none(body))

    @staticmethod
    def add_documents(documents: Sequence[DocumentLike]) -> _Call:
        return _Call("POST", "/v1/documents", {"documents": [_document_body(d) for d in documents]})

    @staticmethod
    def get_document(doc_id: str) -> _Call:
        return _Call("GET", f"/v1/documents/{quote(doc_id, safe='')}")

    @staticmethod
    def list_documents(
        limit: int, after: str | None, include_text: bool, filter: Mapping[str, Any] | None
    ) -> _Call:
        params = {"limit": str(limit), "include_text": str(include_text).lower()}
        if after is not None:
            params["after"] = after
        if filter is not None:
            params["filter"] = json.dumps(dict(filter))
        return _Call("GET", f"/v1/documents?{urlencode(params)}")

    @staticmethod
    def delete_document(doc_id: str) -> _Call:
        return _Call("DELETE", f"/v1/documents/{quote(doc_id, safe='')}")

    @staticmethod
    def delete_documents(ids: Sequence[str] | None, filter: Mapping[str, Any] | None) -> _Call:
        body = {"ids": list(ids) if ids is not None else None, "filter": filter}
        return _Call("POST", "/v1/documents/delete", _drop_none(body))

    @staticmethod
    def embed(texts: Sequence[str]) -> _Call:
        return _Call("POST", "/v1/embed", {"input": list(texts)})

    @staticmethod
    def generate(
        text: str,
        num_generations: int,
        max_length: int | None,
        iterations: int,
        temperature: float,
        seed: int | None,
        model: str | None,
    ) -> _Call:
        body = {
            "text": text,
            "num_generations": num_generations,
            "max_length": max_length,
            "iterations": iterations,
            "temperature": temperature,
            "seed": seed,
            "model": model,
        }
        return _Call("POST", "/v1/generate", _drop_none(body))


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _parse(response: httpx.Response, model: type[M]) -> M:
    if response.is_success:
        return model.model_validate(response.json())
    try:
        error = response.json()["error"]
        error_type, message = str(error["type"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        error_type, message = "http_error", response.text[:500]
    raise LoupeError(response.status_code, error_type, message)


class LoupeClient:
    """Synchronous client.

    Args:
        base_url: the service, e.g. ``http://127.0.0.1:8000``.
        api_key: sent as ``Authorization: Bearer <key>`` when given.
        timeout: seconds per request.
        transport: an httpx transport (tests pass ``httpx.MockTransport`` or an app's).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ):
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=_headers(api_key),
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> LoupeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _do(self, call: _Call, model: type[M]) -> M:
        return _parse(self._http.request(call.method, call.path, json=call.json), model)

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_n: int | None = None,
        return_documents: bool = False,
        max_tokens_per_doc: int | None = None,
        model: str | None = None,
        max_chunks_per_doc: int | None = None,
    ) -> RerankResponse:
        """Scores ``documents`` for ``query``; results best first, ``index`` into the input.
        ``max_chunks_per_doc`` / ``max_tokens_per_doc`` cut long documents first."""
        call = _Calls.rerank(
            query, documents, top_n, return_documents, max_tokens_per_doc, model, max_chunks_per_doc
        )
        return self._do(call, RerankResponse)

    def search(
        self,
        query: str,
        *,
        top_n: int = 10,
        candidates: int = 100,
        rerank: bool = True,
        return_documents: bool = True,
        min_relevance_score: float | None = None,
        filter: Mapping[str, Any] | None = None,
        first_stage: str = "dense",
        offset: int = 0,
    ) -> SearchResponse:
        """Searches the index: ``candidates`` first-stage hits (``first_stage``: dense,
        lexical or hybrid), re-ranked, top ``top_n`` after the first ``offset`` (only those
        with ``relevance_score >= min_relevance_score`` when it is given; only documents
        whose metadata matches ``filter``, ``{"field": value | [values] | {"gte": low,
        "lt": high}}``)."""
        call = _Calls.search(
            query,
            top_n,
            candidates,
            rerank,
            return_documents,
            min_relevance_score,
            filter,
            first_stage,
            offset,
        )
        return self._do(call, SearchResponse)

    def add_documents(self, documents: Sequence[DocumentLike]) -> DocumentsResponse:
        """Adds (or replaces by id) documents given as ``DocumentIn`` or dicts."""
        return self._do(_Calls.add_documents(documents), DocumentsResponse)

    def get_document(self, doc_id: str) -> DocumentOut:
        """A stored document; :class:`LoupeError` with status 404 if there is none."""
        return self._do(_Calls.get_document(doc_id), DocumentOut)

    def list_documents(
        self,
        limit: int = 100,
        after: str | None = None,
        include_text: bool = False,
        filter: Mapping[str, Any] | None = None,
    ) -> DocumentsPage:
        """A page of stored documents (those whose metadata passes ``filter``, if given) in
        id order; pass a page's ``next_cursor`` as ``after`` for the next (None after the
        last). A listing meets every document stored throughout it once."""
        call = _Calls.list_documents(limit, after, include_text, filter)
        return self._do(call, DocumentsPage)

    def iter_documents(
        self,
        page_size: int = 1000,
        include_text: bool = False,
        filter: Mapping[str, Any] | None = None,
    ) -> Iterator[ListedDocument]:
        """Every stored document (whose metadata passes ``filter``, if given), in id order,
        fetched ``page_size`` at a time by following the listing's cursors."""
        after: str | None = None
        while True:
            page = self.list_documents(page_size, after, include_text, filter)
            yield from page.documents
            if page.next_cursor is None:
                return
            after = page.next_cursor

    def delete_document(self, doc_id: str) -> DeleteResponse:
        """Deletes a document; :class:`LoupeError` with status 404 if there is none."""
        return self._do(_Calls.delete_document(doc_id), DeleteResponse)

    def delete_documents(
        self, ids: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None
    ) -> DeleteDocumentsResponse:
        """Deletes the documents with these ``ids``, or all whose metadata passes ``filter``
        (give one); ids no document had come back in ``missing``."""
        return self._do(_Calls.delete_documents(ids, filter), DeleteDocumentsResponse)

    def embed(self, texts: Sequence[str]) -> EmbedResponse:
        """The first-stage encoder's vectors for ``texts``, in order."""
        return self._do(_Calls.embed(texts), EmbedResponse)

    def generate(
        self,
        text: str,
        *,
        num_generations: int = 3,
        max_length: int | None = None,
        iterations: int = 4,
        temperature: float = 0.0,
        seed: int | None = 0,
        model: str | None = None,
    ) -> GenerateResponse:
        """Distinct queries for the passage ``text`` from the service's GMLM decoder, best
        first; :class:`LoupeError` with status 503 when the service runs without one."""
        call = _Calls.generate(
            text, num_generations, max_length, iterations, temperature, seed, model
        )
        return self._do(call, GenerateResponse)

    def models(self) -> ModelsResponse:
        return self._do(_Call("GET", "/v1/models"), ModelsResponse)

    def health(self) -> HealthResponse:
        return self._do(_Call("GET", "/health"), HealthResponse)

    def ready(self) -> bool:
        """True once the service has loaded its models and index."""
        return self._http.get("/ready").status_code == 200


class AsyncLoupeClient:
    """Asynchronous client; same methods as :class:`LoupeClient`, awaitable."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=_headers(api_key),
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncLoupeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _do(self, call: _Call, model: type[M]) -> M:
        return _parse(await self._http.request(call.method, call.path, json=call.json), model)

    async def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_n: int | None = None,
        return_documents: bool = False,
        max_tokens_per_doc: int | None = None,
        model: str | None = None,
        max_chunks_per_doc: int | None = None,
    ) -> RerankResponse:
        call = _Calls.rerank(
            query, documents, top_n, return_documents, max_tokens_per_doc, model, max_chunks_per_doc
        )
        return await self._do(call, RerankResponse)

    async def search(
        self,
        query: str,
        *,
        top_n: int = 10,
        candidates: int = 100,
        rerank: bool = True,
        return_documents: bool = True,
        min_relevance_score: float | None = None,
        filter: Mapping[str, Any] | None = None,
        first_stage: str = "dense",
        offset: int = 0,
    ) -> SearchResponse:
        call = _Calls.search(
            query,
            top_n,
            candidates,
            rerank,
            return_documents,
            min_relevance_score,
            filter,
            first_stage,
            offset,
        )
        return await self._do(call, SearchResponse)

    async def add_documents(self, documents: Sequence[DocumentLike]) -> DocumentsResponse:
        return await self._do(_Calls.add_documents(documents), DocumentsResponse)

    async def get_document(self, doc_id: str) -> DocumentOut:
        return await self._do(_Calls.get_document(doc_id), DocumentOut)

    async def list_documents(
        self,
        limit: int = 100,
        after: str | None = None,
        include_text: bool = False,
        filter: Mapping[str, Any] | None = None,
    ) -> DocumentsPage:
        call = _Calls.list_documents(limit, after, include_text, filter)
        return await self._do(call, DocumentsPage)

    async def iter_documents(
        self,
        page_size: int = 1000,
        include_text: bool = False,
        filter: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[ListedDocument]:
        after: str | None = None
        while True:
            page = await self.list_documents(page_size, after, include_text, filter)
            for document in page.documents:
                yield document
            if page.next_cursor is None:
                return
            after = page.next_cursor

    async def delete_document(self, doc_id: str) -> DeleteResponse:
        return await self._do(_Calls.delete_document(doc_id), DeleteResponse)

    async def delete_documents(
        self, ids: Sequence[str] | None = None, filter: Mapping[str, Any] | None = None
    ) -> DeleteDocumentsResponse:
        return await self._do(_Calls.delete_documents(ids, filter), DeleteDocumentsResponse)

    async def embed(self, texts: Sequence[str]) -> EmbedResponse:
        return await self._do(_Calls.embed(texts), EmbedResponse)

    async def generate(
        self,
        text: str,
        *,
        num_generations: int = 3,
        max_length: int | None = None,
        iterations: int = 4,
        temperature: float = 0.0,
        seed: int | None = 0,
        model: str | None = None,
    ) -> GenerateResponse:
        call = _Calls.generate(
            text, num_generations, max_length, iterations, temperature, seed, model
        )
        return await self._do(call, GenerateResponse)

    async def models(self) -> ModelsResponse:
        return await self._do(_Call("GET", "/v1/models"), ModelsResponse)

    async def health(self) -> HealthResponse:
        return await self._do(_Call("GET", "/health"), HealthResponse)

    async def ready(self) -> bool:
        return (await self._http.get("/ready")).status_code == 200
