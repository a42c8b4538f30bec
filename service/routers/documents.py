"""``POST /v1/documents`` (add or replace by id), ``GET /v1/documents`` (list, paged), ``GET``
and ``DELETE /v1/documents/{id}``, ``POST /v1/documents/delete`` (by ids or by filter)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re

from fastapi import APIRouter, Depends, Query

from index.records import Document
from service.deps import get_runtime, submit
from service.errors import ApiError
from service.limits import check_count, check_lengths
from service.routers.responses import MODEL_ERRORS, errors
from service.runtime import Runtime
from service.schemas import (
    FILTER_RULE,
    DeleteDocumentsRequest,
    DeleteDocumentsResponse,
    DeleteResponse,
    DocumentOut,
    DocumentsPage,
    DocumentsRequest,
    DocumentsResponse,
    ListedDocument,
    filter_from_json,
    metadata_filter,
)

router = APIRouter(tags=["documents"])

MAX_PAGE = 1000
CURSOR = re.compile(r"[A-Za-z0-9_-]{1,8192}")
"""A page cursor: the last listed id, UTF-8 in unpadded URL-safe base64. The pattern bounds
the decoding work: ids up to 6,144 bytes (an HTTP id has at most 512 characters, 2,048
bytes, 2,731 cursor characters; ids from indexed corpora may be longer)."""


def page_cursor(doc_id: str) -> str:
    """The opaque cursor that resumes a listing after ``doc_id``.

    >>> page_cursor("a/b c")
    'YS9iIGM'
    >>> cursor_id(page_cursor("théorème 42"))
    'théorème 42'
    """
    return base64.urlsafe_b64encode(doc_id.encode()).decode().rstrip("=")


def cursor_id(cursor: str) -> str:
    """The id a :func:`page_cursor` was made from; ValueError if ``cursor`` is not one."""
    if not CURSOR.fullmatch(cursor):
        raise ValueError("not a cursor from this API")
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("not a cursor from this API") from None


def require_writable(runtime: Runtime) -> None:
    """403 before any work when this service serves its index read-only."""
    if runtime.engine.read_only:
        raise ApiError(
            403,
            "this service serves a read-only index (LOUPE_READ_ONLY); send writes to the "
            "service that owns the index",
            error_type="read_only",
        )


@router.post(
    "/v1/documents",
    response_model=DocumentsResponse,
    responses={**MODEL_ERRORS, **errors(403)},
    summary="Add documents, replacing any with the same id",
)
async def add_documents(
    body: DocumentsRequest, runtime: Runtime = Depends(get_runtime)
) -> DocumentsResponse:
    """Encodes and stores the documents; they are searchable when this returns.

    The SQLite docstore is written first, so acknowledged documents survive a restart.
    """
    require_writable(runtime)
    settings = runtime.settings
    check_count(len(body.documents), settings)
    check_lengths([d.text for d in body.documents], settings, "documents")
    check_lengths([d.title for d in body.documents], settings, "titles")
    documents = [Document(d.id, d.text, d.title, d.metadata) for d in body.documents]
    engine = runtime.engine
    cost = engine.estimate_tokens(d.full_text for d in documents)
    await submit(runtime.documents, documents, cost, settings.request_timeout_s)
    total = await asyncio.to_thread(engine.document_count)
    return DocumentsResponse(
        upserted=len(documents), ids=[d.id for d in documents], total_documents=total
    )


@router.get(
    "/v1/documents",
    response_model=DocumentsPage,
    responses=errors(401, 422, 500, 503),
    summary="List stored documents, a page at a time",
)
async def list_documents(
    runtime: Runtime = Depends(get_runtime),
    limit: int = Query(100, ge=1, le=MAX_PAGE, description="documents per page"),
    after: str | None = Query(
        None, min_length=1, description="the next_cursor of the previous page"
    ),
    include_text: bool = Query(False, description="include each document's text"),
    filter: str | None = Query(
        None, description=f"JSON: only {FILTER_RULE}", examples=['{"topic": "food"}']
    ),
) -> DocumentsPage:
    """Documents in id order (the binary order of their UTF-8 bytes). A listing meets every
    document stored throughout it exactly once, however many are replaced or deleted
    meanwhile; documents added meanwhile appear if their ids come after the cursor."""
    after_id = None
    if after is not None:
        try:
            after_id = cursor_id(after)
        except ValueError as exc:
            raise ApiError(422, f"after: {exc}: {after!r}") from None
    where = None
    if filter is not None:
        try:
            where = filter_from_json(filter)
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
    engine = runtime.engine
    page = await asyncio.to_thread(engine.list_documents, after_id, limit + 1, where)
    more = len(page) > limit
    page = page[:limit]
    total = await asyncio.to_thread(engine.document_count)
    documents = [
        ListedDocument(
            id=document.id,
            title=document.title,
            metadata=document.metadata,
            text=document.text if include_text else None,
        )
        for document in page
    ]
    cursor = page_cursor(page[-1].id) if more else None
    return DocumentsPage(documents=documents, next_cursor=cursor, total_documents=total)


@router.post(
    "/v1/documents/delete",
    response_model=DeleteDocumentsResponse,
    response_model_exclude_none=True,
    responses=errors(401, 403, 413, 422, 500, 503),
    summary="Delete documents by ids or by a metadata filter",
)
async def delete_documents(
    body: DeleteDocumentsRequest, runtime: Runtime = Depends(get_runtime)
) -> DeleteDocumentsResponse:
    """Removes, in one docstore transaction, the documents with the ``ids`` given or every
    document whose metadata passes ``filter``. Ids that no document has are listed in
    ``missing``; they are not an error."""
    require_writable(runtime)
    engine = runtime.engine
    missing = None
    if body.ids is not None:
        check_count(len(body.ids), runtime.settings)
        deleted = set(await runtime.run(engine.delete_documents, body.ids))
        count = len(deleted)
        missing = list(dict.fromkeys(i for i in body.ids if i not in deleted))
    else:
        where = metadata_filter(body.filter)
        if where is None:  # the request model admits only one of the two
            raise ApiError(422, "give exactly one of ids and filter")
        count = await runtime.run(engine.delete_matching, where)
    total = await asyncio.to_thread(engine.document_count)
    return DeleteDocumentsResponse(deleted=count, missing=missing, total_documents=total)


@router.get(
    "/v1/documents/{doc_id:path}",
    response_model=DocumentOut,
    responses=errors(401, 404, 500, 503),
    summary="Get a stored document by id",
)
async def get_document(doc_id: str, runtime: Runtime = Depends(get_runtime)) -> DocumentOut:
    """The document as it was last added (text, title, metadata); 404 if there is none."""
    document = await asyncio.to_thread(runtime.engine.get_document, doc_id)
    if document is None:
        raise ApiError(404, f"no document with id {doc_id!r}")
    return DocumentOut(
        id=document.id, text=document.text, title=document.title, metadata=document.metadata
    )


@router.delete(
    "/v1/documents/{doc_id:path}",
    response_model=DeleteResponse,
    responses=errors(401, 403, 404, 500, 503),
    summary="Delete a document by id",
)
async def delete_document(doc_id: str, runtime: Runtime = Depends(get_runtime)) -> DeleteResponse:
    """Removes the document from the docstore and the index; 404 if there is none."""
    require_writable(runtime)
    engine = runtime.engine
    if not await runtime.run(engine.delete_document, doc_id):
        raise ApiError(404, f"no document with id {doc_id!r}")
    total = await asyncio.to_thread(engine.document_count)
    return DeleteResponse(id=doc_id, deleted=True, total_documents=total)
