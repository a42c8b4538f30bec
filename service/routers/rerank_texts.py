"""The re-ranking step TEI's and Voyage AI's routes share: plain texts, each either cut to
what the re-ranker reads or, where the client said not to cut, refused (413) when it is
longer than that (as TEI and Voyage refuse an input over their context)."""

from __future__ import annotations

from collections.abc import Sequence

from service.deps import submit
from service.engine import RerankJob, RerankOutcome
from service.errors import ApiError
from service.limits import check_count, check_lengths
from service.runtime import Runtime


async def rerank_texts(
    runtime: Runtime,
    query: str,
    texts: Sequence[str],
    *,
    cut: bool,
    keep_end: bool = False,
    what: str,
    cut_hint: str,
) -> RerankOutcome:
    """Score ``texts`` (the request's field ``what``) for ``query``. With ``cut``, each
    text is cut to what the re-ranker reads (keeping its end with ``keep_end``); without,
    one over ``max_text_chars``, or longer than the re-ranker's ``rerank_max_length``
    tokens, is refused with 413 and ``cut_hint`` says how to cut it."""
    settings, engine = runtime.settings, runtime.engine
    check_count(len(texts), settings)
    check_lengths([query], settings, "query")
    if not cut:
        check_lengths(texts, settings, what, hint=cut_hint)
        limit = engine.rerank_max_length
        _, over = await runtime.run(engine.truncate, list(texts), limit)
        if over:
            raise ApiError(
                413,
                f"{over} of the {what} are longer than the {limit} tokens the re-ranker "
                f"reads{cut_hint}",
                error_type="text_too_long",
            )
    job = RerankJob(
        query, list(texts), engine.rerank_max_length if cut else None, keep_end=keep_end
    )
    done = await submit(
        runtime.rerank,
        job,
        engine.estimate_tokens([query, *texts], cap=engine.rerank_max_length),
        settings.request_timeout_s,
    )
    return done.value
