"""Encodings kept for documents that come again unchanged: a live index's own (a document
re-sent over HTTP to change its metadata), or the generation a rebuild of the same folder
replaces. Either way the document costs no model pass."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from index.docstore import DocStore
from index.manifest import Manifest
from index.records import EXPANSION_KEY, Document
from index.searcher import stored_token_matrices
from index.token_store import TokenStore

log = logging.getLogger(__name__)

Encoding = tuple[np.ndarray, np.ndarray | None]
"""A document's stored ``(dim,)`` vector and, where asked for, its re-ranker's
``(tokens, d)`` matrix."""

MatrixLookup = Callable[[list[int]], list[np.ndarray | None]]
"""Stored re-ranker matrices of docstore keys (None where a key has none)."""


def unchanged_encodings(
    docstore: DocStore, documents: Sequence[Document], matrices: MatrixLookup | None
) -> dict[int, Encoding]:
    """By position in ``documents``: the encodings ``docstore`` keeps for those stored under
    the same id with the same text for the re-ranker and for the first stage. With
    ``matrices``, a document whose matrix it cannot give is left out (it must be encoded)."""
    stored = docstore.get_by_ids(d.id for d in documents)
    same = {
        i: old.key
        for i, d in enumerate(documents)
        if (old := stored.get(d.id)) is not None
        and (old.document.full_text, old.document.first_stage_text)
        == (d.full_text, d.first_stage_text)
    }
    if not same:
        return {}
    found_keys, vectors = docstore.vectors_for_keys(same.values())
    vector_of = {int(k): v for k, v in zip(found_keys, vectors, strict=True)}
    wanted = sorted(set(same.values()))
    matrix_of = dict(zip(wanted, matrices(wanted), strict=True)) if matrices else {}
    encodings: dict[int, Encoding] = {}
    for i, key in same.items():
        matrix = matrix_of.get(key)
        if key in vector_of and (matrices is None or matrix is not None):
            encodings[i] = (vector_of[key], matrix)
    return encodings


ENCODER_META = "encoder_fingerprint"
"""Docstore meta key: the hash of the encoder weights an index's vectors come from, set by
the first writer of an index a service created (a build records it in its fingerprint), and
MIXED_ENCODERS once another encoder has written there."""

MIXED_ENCODERS = "mixed"
"""Recorded where vectors from different encoders were written: no encoder matches it."""


def recorded_encoder(docstore: DocStore, build_meta: str) -> str | None:
    """The encoder weights hash a docstore's vectors come from, as recorded (None: unknown,
    a docstore written before it was)."""
    recorded = docstore.get_meta(ENCODER_META) or (docstore.get_meta(build_meta) or {}).get(
        "encoder"
    )
    return str(recorded) if recorded is not None else None


ENCODING_FIELDS = ("model", "encoder", "max_length")
"""What a build's vectors depend on (its fingerprint's fields; see index/builder.py)."""
MATRIX_FIELDS = ("reranker", "token_dtype")
"""What its token store's matrices depend on besides."""


class PreviousGeneration:
    """The index a rebuild of the same folder replaces, read for what its unchanged documents
    cost a model pass to get: their encodings, where it was built with the same encoder (and,
    for a build with a token store, the same re-ranker and token dtype), and their doc2query
    queries, where it was expanded by the same generator decoding the same way."""

    def __init__(
        self,
        docstore: DocStore,
        tokens: TokenStore | None,
        fingerprint: str | None,
        *,
        same_encodings: bool = True,
        expanded_up_to: int | None = None,
    ) -> None:
        self.docstore = docstore
        self.tokens = tokens
        self.fingerprint = fingerprint
        """The re-ranker whose matrices are reused (None: vectors only)."""
        self.same_encodings = same_encodings
        """Whether its vectors (and matrices) are those this build would compute."""
        self.expanded_up_to = expanded_up_to
        """The last docstore key its build wrote with the same expansion (None: none): later
        keys were written over HTTP, with whatever queries their client sent."""

    @classmethod
    def open(
        cls,
        folder: Path,
        manifest: Manifest,
        fingerprint: Mapping[str, Any],
        build_meta: str,
        with_matrices: bool,
        progress_meta: str | None = None,
    ) -> PreviousGeneration | None:
        """The generation ``manifest`` names, when the build that wrote it (its docstore's
        ``build_meta``) matches ``fingerprint`` where the encodings or the expansions depend
        on it; else None. ``progress_meta``: the docstore meta where that build recorded the
        last key it wrote (``max_key``), which bounds the expansions reused."""
        path = folder / manifest.docstore_file
        if not path.is_file():
            return None
        docstore = DocStore(path, read_only=True)
        written_by = docstore.get_meta(build_meta) or {}
        fields = ENCODING_FIELDS + (MATRIX_FIELDS if with_matrices else ())
        mixed = recorded_encoder(docstore, build_meta) != fingerprint.get("encoder")
        same_encodings = not mixed and all(
            written_by.get(name) == fingerprint.get(name) for name in fields
        )
        expanded_up_to = None
        expansion = fingerprint.get("expansion")
        if expansion is not None and written_by.get("expansion") == expansion and progress_meta:
            expanded_up_to = (docstore.get_meta(progress_meta) or {}).get("max_key")
        if not same_encodings and expanded_up_to is None:
            log.info("%s: the index there was encoded otherwise; nothing is reused", folder)
            docstore.close()
            return None
        tokens = fingerprint_of = None
        if same_encodings and with_matrices:
            fingerprint_of = str(fingerprint.get("reranker"))
            if manifest.token_store_file:
                tokens = TokenStore(folder / manifest.token_store_file)
        return cls(
            docstore,
            tokens,
            fingerprint_of,
            same_encodings=same_encodings,
            expanded_up_to=int(expanded_up_to) if expanded_up_to is not None else None,
        )

    def encodings(self, documents: Sequence[Document]) -> dict[int, Encoding]:
        """See :func:`unchanged_encodings`; matrices from the token store the build wrote,
        or the docstore (documents added while it was served)."""
        if not self.same_encodings:
            return {}
        lookup: MatrixLookup | None = None
        if self.fingerprint is not None:
            fingerprint = self.fingerprint

            def lookup(keys: list[int]) -> list[np.ndarray | None]:
                return stored_token_matrices(self.tokens, self.docstore, keys, fingerprint)

        return unchanged_encodings(self.docstore, documents, lookup)

    def expansions(self, documents: Sequence[Document]) -> dict[int, list[str]]:
        """By position in ``documents``: the doc2query queries its build generated for those
        stored under the same id with the same text (the generator's input)."""
        if self.expanded_up_to is None:
            return {}
        stored = self.docstore.get_by_ids(d.id for d in documents)
        found: dict[int, list[str]] = {}
        for i, document in enumerate(documents):
            old = stored.get(document.id)
            if old is None or old.key > self.expanded_up_to:
                continue  # not stored, or written over HTTP since the build
            queries = old.document.metadata.get(EXPANSION_KEY)
            if (
                old.document.full_text == document.full_text
                and isinstance(queries, list)
                and all(isinstance(q, str) for q in queries)
            ):
                found[i] = list(queries)
        return found

    def close(self) -> None:
        self.docstore.close()
