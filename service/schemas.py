"""Request and response models of the HTTP API (pydantic only: the client imports them too).

Request models forbid unknown fields, except the fields that Cohere's and Jina's SDKs send,
which are accepted (and ignored where Loupe has no use for them).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from index.metadata_filter import MAX_FIELDS, MAX_VALUES, RANGE_OPERATORS, MetadataFilter


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


NOT_BLANK_PATTERN = (
    r"[^\x09-\x0d\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
)
"""A character that is not whitespace, as ``str.strip`` reads it, written so that JSON
Schema (ECMA-262) and Python regular expressions read it alike.

>>> import re
>>> blank = "".join(chr(c) for c in range(0x110000) if chr(c).isspace())
>>> re.search(NOT_BLANK_PATTERN, blank) is None
True
>>> [m.group() for m in re.finditer(NOT_BLANK_PATTERN, blank + "x\ufeff")]
['x', '\ufeff']
"""

NonBlank = Annotated[
    str,
    AfterValidator(_not_blank),
    Field(json_schema_extra={"minLength": 1, "pattern": NOT_BLANK_PATTERN}),
]
"""A string with something besides whitespace in it; the OpenAPI schema says so too."""


def _valid_filter(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None:
        MetadataFilter.from_mapping(value)
    return value


_FILTER_SCALAR = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}
_FILTER_BOUND = {"anyOf": [{"type": "string"}, {"type": "number"}]}
FILTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": MAX_FIELDS,
    "propertyNames": {"minLength": 1, "pattern": r'^[^"\\]*$'},
    "additionalProperties": {
        "anyOf": [
            _FILTER_SCALAR,
            {"type": "array", "items": _FILTER_SCALAR, "minItems": 1, "maxItems": MAX_VALUES},
            {
                "type": "object",
                "properties": {op: _FILTER_BOUND for op in RANGE_OPERATORS},
                "additionalProperties": False,
                "minProperties": 1,
            },
        ]
    },
}
"""What the OpenAPI schema says of a filter (a range's bounds of one type, finiteness and
64-bit integers are :meth:`MetadataFilter.from_mapping`'s to check)."""

FilterMapping = Annotated[
    dict[str, Any] | None,
    AfterValidator(_valid_filter),
    WithJsonSchema({"anyOf": [FILTER_SCHEMA, {"type": "null"}]}),
]
"""A metadata filter as JSON, checked by :meth:`MetadataFilter.from_mapping`."""

FILTER_RULE = (
    "documents whose metadata has, for every field named, one of the values given, or a "
    'value within the range given: {"topic": "food", "year": [2023, 2024], "date": {"gte": '
    '"2024-01-01", "lt": "2025"}} (strings, numbers, booleans; a list means any of them; a '
    "range takes gt, gte, lt, lte, all numbers or all strings, which compare by character)"
)


def metadata_filter(mapping: dict[str, Any] | None) -> MetadataFilter | None:
    """A request's ``filter`` as the index reads it."""
    return MetadataFilter.from_mapping(mapping) if mapping is not None else None


def filter_from_json(text: str) -> MetadataFilter:
    """A ``filter`` given as JSON text (a query parameter); ValueError, with the message a
    body's ``filter`` gets, if it is not one.

    >>> filter_from_json('{"topic": "food"}').fields
    (('topic', ('food',)),)
    >>> filter_from_json("[1]")
    Traceback (most recent call last):
    ...
    ValueError: filter: a JSON object is needed, such as {"topic": "food"}
    """
    try:
        mapping = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"filter: not JSON: {exc}") from None
    if not isinstance(mapping, dict):
        raise ValueError('filter: a JSON object is needed, such as {"topic": "food"}')
    return MetadataFilter.from_mapping(mapping)


# --- errors --------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    """The body of every error: ``{"error": {"type", "message"}}``."""

    error: ErrorDetail


# --- rerank --------------------------------------------------------------------------------


class RerankDocumentIn(BaseModel):
    """A document given as an object: ``{"text": ...}`` (other fields kept for rank_fields),
    or ``{"id": ...}`` alone, naming a document the index holds."""

    model_config = ConfigDict(extra="allow")

    text: str | None = None
    id: str | int | None = Field(
        None,
        description="without 'text' (and rank_fields): a document of the index, scored as "
        "its title and text, from its stored matrices",
    )


class RerankRequest(_Request):
    """Cohere v2 / Jina v1 compatible re-rank request."""

    query: NonBlank = Field(description="the search query")
    documents: list[str | RerankDocumentIn] = Field(
        description="texts, or objects with a 'text' field (or an 'id' the index holds)",
        min_length=1,
    )
    top_n: int | None = Field(None, ge=1, description="results to return (default: all)")
    return_documents: bool = Field(False, description="echo each document's text")
    model: str | None = Field(None, description="accepted for compatibility; one model serves")
    max_tokens_per_doc: int | None = Field(
        None, ge=1, description="truncate each document to this many tokens"
    )
    rank_fields: list[str] | None = Field(
        None, description="for object documents: the fields joined into the scored text"
    )
    max_chunks_per_doc: int | None = Field(
        None,
        ge=1,
        description="Cohere v1: read at most this many of the re-ranker's windows of each "
        "document (default: all it reads, 8 for the default re-ranker and for a "
        "cross-encoder; the dual encoder's cosine reads no windows and ignores it)",
    )
    # Sent by Cohere SDKs; accepted and ignored.
    relevant_spans: Any | None = None
    priority: int | None = None


class VoyageRerankRequest(_Request):
    """Voyage AI's re-rank request, as its SDK sends it (always with ``truncation``)."""

    query: NonBlank = Field(description="the search query")
    documents: list[str] = Field(description="the texts to rank", min_length=1)
    model: str | None = Field(None, description="accepted for compatibility; one model serves")
    top_k: int | None = Field(None, ge=1, description="results to return (default: all)")
    return_documents: bool = Field(False, description="echo each document")
    truncation: bool = Field(
        True,
        description="cut documents to what the re-ranker reads instead of refusing those over "
        "max_text_chars with 413",
    )


class VoyageRerankResult(BaseModel):
    index: int
    relevance_score: float
    document: str | None = None


class VoyageRerankResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[VoyageRerankResult]
    model: str
    usage: Usage


TeiTruncationDirection = Literal["right", "left", "Right", "Left"]
"""TEI's ``truncation_direction``, in either case (its documentation shows both)."""


class TeiRerankRequest(_Request):
    """Hugging Face text-embeddings-inference (TEI) compatible re-rank request."""

    query: NonBlank = Field(description="the search query")
    texts: list[str] = Field(description="the texts to rank", min_length=1)
    raw_scores: bool = Field(
        False,
        description="the re-ranker's raw scores instead of probabilities of relevance (which "
        "a calibrated re-ranker or a cross-encoder gives; /v1/models says which)",
    )
    return_text: bool = Field(False, description="echo each text")
    truncate: bool | None = Field(
        False,
        description="cut texts to what the re-ranker reads instead of refusing those over "
        "max_text_chars with 413",
    )
    truncation_direction: TeiTruncationDirection = Field(
        "right", description="right: keep a text's beginning; left: keep its end"
    )


class TeiEmbedRequest(_Request):
    """Hugging Face text-embeddings-inference (TEI) compatible embedding request."""

    inputs: str | list[str] = Field(description="a text, or texts, to embed")
    normalize: bool = Field(True, description="unit-length vectors (Loupe gives only those)")
    truncate: bool | None = Field(
        False,
        description="skip the max_text_chars check (413 above it) and cut each text to the "
        "encoder's tokens from the truncation_direction side",
    )
    truncation_direction: TeiTruncationDirection = Field(
        "right",
        description="with truncate: 'right' keeps a text's first tokens, 'left' its last",
    )
    prompt_name: str | None = Field(None, description="accepted when null; no prompts here")
    dimensions: int | None = Field(None, ge=1, description="the encoder's dimension, if given")


class TeiRank(BaseModel):
    index: int
    score: float
    text: str | None = None


class RerankDocumentOut(BaseModel):
    text: str


class RerankResult(BaseModel):
    index: int
    relevance_score: float = Field(
        description="probability of relevance in [0, 1] where the re-ranker is calibrated "
        "(/v1/models says so), else its raw score"
    )
    document: RerankDocumentOut | None = None


class ApiVersion(BaseModel):
    version: str = "2"


class BilledUnits(BaseModel):
    search_units: int | None = None
    input_tokens: int | None = None


class TokenCounts(BaseModel):
    input_tokens: int


class RerankMeta(BaseModel):
    """Cohere's ``meta`` (api_version, billed_units, tokens) plus Loupe's timings."""

    api_version: ApiVersion = ApiVersion()
    billed_units: BilledUnits | None = None
    tokens: TokenCounts | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    warnings: list[str] | None = None


class Usage(BaseModel):
    total_tokens: int
    prompt_tokens: int | None = None


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult]
    meta: RerankMeta
    usage: Usage


# --- search --------------------------------------------------------------------------------


class SearchRequest(_Request):
    query: NonBlank
    top_n: int = Field(10, ge=1, description="hits to return")
    offset: int = Field(
        0, ge=0, description="hits to skip first, for the next page (offset + top_n ranked)"
    )
    candidates: int = Field(100, ge=1, description="first-stage depth (re-ranked when rerank)")
    rerank: bool = Field(True, description="re-score the candidates with the re-ranker")
    return_documents: bool = Field(True, description="include text, title and metadata")
    min_relevance_score: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="drop re-ranked hits whose relevance_score is lower (needs a calibrated "
        "re-ranker, see /v1/models); fewer than top_n may come back",
    )
    first_stage: Literal["dense", "lexical", "hybrid"] = Field(
        "dense",
        description="where candidates come from: the dense index, the full-text index (BM25, "
        "current with every write), or both fused by reciprocal rank",
    )
    filter: FilterMapping = Field(
        None, description=f"only {FILTER_RULE}", examples=[{"topic": "food"}]
    )


class SearchHit(BaseModel):
    id: str
    score: float
    relevance_score: float | None = Field(
        None, description="re-ranked hits: probability of relevance, where the model has one"
    )
    first_stage_score: float = Field(
        description="the first stage's score: the cosine (dense), BM25 (lexical) or the "
        "reciprocal-rank score (hybrid)"
    )
    text: str | None = None
    title: str | None = None
    metadata: dict[str, Any] | None = None


class SearchTimings(BaseModel):
    """Milliseconds; the model stages are those of the merged batch the request ran in."""

    queue_ms: float
    encode_ms: float
    first_stage_ms: float
    rerank_ms: float
    total_ms: float


class SearchResponse(BaseModel):
    id: str
    model: str
    results: list[SearchHit]
    timings: SearchTimings


# --- documents -----------------------------------------------------------------------------


class DocumentIn(_Request):
    id: NonBlank = Field(max_length=512)
    text: str
    title: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)


class DocumentsRequest(_Request):
    documents: list[DocumentIn] = Field(min_length=1)

    @field_validator("documents")
    @classmethod
    def _unique_ids(cls, documents: list[DocumentIn]) -> list[DocumentIn]:
        seen: set[str] = set()
        for doc in documents:
            if doc.id in seen:
                raise ValueError(f"document id {doc.id!r} appears twice")
            seen.add(doc.id)
        return documents


class DocumentsResponse(BaseModel):
    upserted: int
    ids: list[str]
    total_documents: int


class DocumentOut(BaseModel):
    """A stored document, as it was last added."""

    id: str
    text: str
    title: str
    metadata: dict[str, Any]


class ListedDocument(BaseModel):
    id: str
    title: str
    metadata: dict[str, Any]
    text: str | None = Field(None, description="null unless include_text=true")


class DocumentsPage(BaseModel):
    documents: list[ListedDocument]
    next_cursor: str | None = Field(
        description="pass as `after` for the next page; null on the last page"
    )
    total_documents: int


class DeleteResponse(BaseModel):
    id: str
    deleted: bool
    total_documents: int


class DeleteDocumentsRequest(_Request):
    """Documents to delete: by ``ids``, or every one a ``filter`` passes (one of the two)."""

    ids: list[NonBlank] | None = Field(None, min_length=1, description="delete these ids")
    filter: FilterMapping = Field(
        None, description=f"delete all {FILTER_RULE}", examples=[{"tenant": "acme"}]
    )

    @model_validator(mode="after")
    def _one_selector(self) -> DeleteDocumentsRequest:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("give exactly one of ids and filter")
        return self


class DeleteDocumentsResponse(BaseModel):
    deleted: int = Field(description="documents deleted")
    missing: list[str] | None = Field(
        None, description="ids given that no document had (requests by ids)"
    )
    total_documents: int


# --- embed ---------------------------------------------------------------------------------


class EmbedInputObject(_Request):
    text: str


class EmbedRequest(_Request):
    """OpenAI / Jina compatible embedding request."""

    input: str | list[str | EmbedInputObject]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    # Sent by OpenAI / Jina clients; accepted and ignored.
    user: str | None = None
    task: str | None = None
    normalized: bool | None = None
    embedding_type: Literal["float", "base64", "binary", "ubinary"] | None = Field(
        None,
        description="Jina's: base64 is encoding_format's; binary and ubinary are the signs as "
        "bits, 8 to a byte, first dimension highest (binary: minus 128), as Cohere's",
    )

    def texts(self) -> list[str]:
        items = [self.input] if isinstance(self.input, str) else self.input
        return [x if isinstance(x, str) else x.text for x in items]


class CohereTextContent(_Request):
    type: Literal["text"] = "text"
    text: str


class CohereEmbedInput(_Request):
    content: list[CohereTextContent] = Field(min_length=1)


CohereEmbeddingType = Literal["float", "base64", "int8", "uint8", "binary", "ubinary"]


class CohereEmbedRequest(_Request):
    """Cohere's embed request, as its v1 (``texts``) and v2 (``texts`` or ``inputs``) SDKs
    send it; text only. Its byte and bit ``embedding_types`` are Loupe's own fixed
    quantisation of its unit vectors (service/routers/embed_encoding.py)."""

    texts: list[str] | None = None
    inputs: list[CohereEmbedInput] | None = None
    images: list[str] | None = None
    model: str | None = None
    input_type: (
        Literal["search_document", "search_query", "classification", "clustering"] | None
    ) = Field(None, description="accepted; the encoder embeds queries and documents alike")
    embedding_types: list[CohereEmbeddingType] | None = Field(
        None,
        description="one or more of: float; base64 (float32); int8 or uint8 (a byte a "
        "dimension, one scale for every vector); binary or ubinary (a bit a dimension, set "
        "where it is positive, 8 to a byte, first dimension highest)",
    )
    truncate: Literal["NONE", "START", "END"] | None = Field(
        None, description="an over-long text: refused (NONE), or cut at its START or END"
    )
    max_tokens: int | None = Field(None, ge=1, description="tokens read of each text")
    output_dimension: int | None = Field(None, ge=1)
    priority: int | None = None

    @model_validator(mode="after")
    def _texts_or_inputs(self) -> CohereEmbedRequest:
        if self.images:
            raise ValueError("images: Loupe embeds text only")
        if (self.texts is None) == (self.inputs is None):
            raise ValueError("give exactly one of texts and inputs")
        return self

    def text_list(self) -> list[str]:
        """The texts, an input's text parts joined by a space."""
        if self.texts is not None:
            return list(self.texts)
        return [" ".join(part.text for part in item.content) for item in self.inputs or ()]


class CohereEmbeddingsByType(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    float_: list[list[float]] | None = Field(None, alias="float")
    base64: list[str] | None = None
    int8: list[list[int]] | None = None
    uint8: list[list[int]] | None = None
    binary: list[list[int]] | None = None
    ubinary: list[list[int]] | None = None


class CohereEmbedResponse(BaseModel):
    """Cohere's embed answer: ``embeddings_floats`` (v1 without ``embedding_types``) or
    ``embeddings_by_type``."""

    id: str
    response_type: Literal["embeddings_floats", "embeddings_by_type"]
    embeddings: list[list[float]] | CohereEmbeddingsByType
    texts: list[str]
    meta: RerankMeta


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | list[int] | str


class EmbedResponse(BaseModel):
    object: Literal["list"] = "list"
    model: str
    data: list[Embedding]
    usage: Usage


# --- health and models ---------------------------------------------------------------------


class HealthResponse(BaseModel):
    status: Literal["ok", "loading", "failed"]
    error: ErrorDetail | None = None


class ReadyResponse(BaseModel):
    ready: bool
    status: Literal["ok", "loading", "failed"]
    documents: int | None = None
    read_only: bool | None = None
    """Whether this service serves its index read-only (document writes answer 403)."""
    index_generation: str | None = None
    """The build (or snapshot) of the index served: a read-only replica's changes when it
    reloads a rebuilt index."""
    error: ErrorDetail | None = None


class RuntimeInfo(BaseModel):
    """Where a model's encoder runs, and why (``loupe serve --runtime``)."""

    runtime: Literal["torch", "onnx"]
    requested: Literal["auto", "torch", "onnx"]
    provider: str
    """torch device, or the ONNX Runtime execution provider."""
    reason: str
    calibration_ms: dict[str, float] = {}
    """``auto``: milliseconds per runtime on the start-up calibration batch."""


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str = "loupe"
    role: Literal["encoder", "reranker", "generator"]
    dimension: int | None = None
    max_tokens: int | None = None
    """Tokens of a text the model reads (for the re-ranker: of each document, across its
    windows); the rest of a longer text is not scored."""
    calibrated: bool | None = None
    """The re-ranker: whether its relevance scores are probabilities of relevance."""
    runtime: RuntimeInfo | None = None


class ModelsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# --- generate ------------------------------------------------------------------------------


class GenerateRequest(_Request):
    text: NonBlank = Field(description="the passage to write queries for")
    num_generations: int = Field(3, ge=1, le=32, description="distinct queries to return")
    max_length: int | None = Field(None, ge=1, le=512, description="most tokens per query")
    iterations: int = Field(4, ge=1, le=32, description="parallel refinement passes")
    length_candidates: int | None = Field(
        None, ge=1, le=32, description="target lengths tried (default: num_generations, >= 2)"
    )
    temperature: float = Field(0.0, ge=0, le=10, description="0: most likely tokens")
    seed: int | None = Field(0, description="sampling seed (with temperature > 0)")
    model: str | None = None


class GeneratedText(BaseModel):
    text: str
    score: float = Field(description="mean log-probability per token")


class GenerateMeta(BaseModel):
    iterations_run: int
    timings: dict[str, float] = Field(default_factory=dict)


class GenerateResponse(BaseModel):
    id: str
    model: str
    generations: list[GeneratedText]
    meta: GenerateMeta
    usage: Usage
