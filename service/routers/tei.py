"""``POST /rerank`` and ``POST /embed``: Hugging Face text-embeddings-inference (TEI)
compatible re-ranking and embedding, for clients written against TEI (LlamaIndex's and
LangChain's TEI integrations, raw HTTP)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from index.rerank import order_by_score
from service.deps import get_runtime, submit
from service.errors import ApiError
from service.limits import check_count, check_lengths
from service.routers.rerank_texts import rerank_texts
from service.routers.responses import MODEL_ERRORS
from service.runtime import Runtime
from service.schemas import TeiEmbedRequest, TeiRank, TeiRerankRequest

router = APIRouter(tags=["rerank"])


@router.post(
    "/rerank",
    response_model=list[TeiRank],
    response_model_exclude_none=True,
    responses=MODEL_ERRORS,
    summary="Re-rank texts for a query (TEI's request and answer)",
)
async def rerank_tei(
    body: TeiRerankRequest, runtime: Runtime = Depends(get_runtime)
) -> list[TeiRank]:
    """Scores every text against the query and returns ``[{index, score, text?}]``, best
    first, as TEI does.

    ``score`` is the probability of relevance where the re-ranker gives one (a calibrated
    re-ranker, such as the default, or a cross-encoder's sigmoid), else its raw score;
    ``raw_scores: true`` asks for the raw score. Loupe reads long texts whole, as windows,
    up to what the re-ranker reads; ``truncate: true`` cuts texts to that (from the end, or
    with ``truncation_direction: left`` from the start) instead of refusing texts longer than
    ``max_text_chars`` with 413.
    """
    outcome = await rerank_texts(
        runtime,
        body.query,
        body.texts,
        cut=bool(body.truncate),
        keep_end=body.truncation_direction.lower() == "left",
        what="texts",
        cut_hint="; pass truncate: true to cut them",
    )
    scores = outcome.scores if body.raw_scores or outcome.relevance is None else outcome.relevance
    return [
        TeiRank(
            index=i,
            score=float(scores[i]),
            text=body.texts[i] if body.return_text else None,
        )
        for i in order_by_score(outcome.scores)
    ]


@router.post(
    "/embed",
    response_model=list[list[float]],
    responses=MODEL_ERRORS,
    summary="Embed texts with the first-stage encoder (TEI's request and answer)",
)
async def embed_tei(
    body: TeiEmbedRequest, runtime: Runtime = Depends(get_runtime)
) -> list[list[float]]:
    """One unit-length vector per input, in input order, as TEI answers: a list of lists."""
    settings = runtime.settings
    engine = runtime.engine
    texts = [body.inputs] if isinstance(body.inputs, str) else body.inputs
    if not texts:
        raise ApiError(422, "inputs: must hold at least one text")
    if not body.normalize:
        raise ApiError(422, "normalize: Loupe returns unit-length vectors only")
    if body.prompt_name is not None:
        raise ApiError(422, "prompt_name: this encoder has no prompts")
    if body.dimensions is not None and body.dimensions != engine.dimension:
        raise ApiError(
            422, f"dimensions: the encoder gives {engine.dimension}, not {body.dimensions}"
        )
    check_count(len(texts), settings, "inputs")
    if not body.truncate:
        hint = "; pass truncate: true to cut them"
        check_lengths(texts, settings, "inputs", hint=hint)
        # as TEI refuses an input over its model's length
        limit = engine.text_token_limit
        _, over = await runtime.run(engine.truncate, texts, limit)
        if over:
            raise ApiError(
                413,
                f"{over} of the inputs are longer than the {limit} tokens the encoder reads{hint}",
                error_type="text_too_long",
            )
    elif body.truncation_direction.lower() == "left":
        # keep each text's last tokens; the encoder then cuts nothing more (on the model
        # thread: the tokenizer is not shared across threads)
        texts, _ = await runtime.run(engine.truncate, texts, engine.text_token_limit, True)
    done = await submit(
        runtime.embed, texts, engine.estimate_tokens(texts), settings.request_timeout_s
    )
    return [vector.tolist() for vector in done.value.vectors]
