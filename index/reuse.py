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
from index.records import Document
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
    keys = docstore.keys_for_ids(d.id for d in documents)
    stored = docstore.get_by_keys(keys.values())
    same = {
        i: keys[d.id]
        for i, d in enumerate(documents)
        if d.id in keys
        and (old := stored.get(keys[d.id])) is not None
        and (old.full_text, old.first_stage_text) == (d.full_text, d.first_stage_text)
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
    """The index a rebuild of the same folder replaces, read for the encodings of its
    unchanged documents, where it was built with the same encoder (and, for a build with a
    token store, the same re-ranker and token dtype)."""

    def __init__(
        self, docstore: DocStore, tokens: TokenStore | None, fingerprint: str | None
    ) -> None:
        self.docstore = docstore
        self.tokens = tokens
        self.fingerprint = fingerprint
        """The re-ranker whose matrices are reused (None: vectors only)."""

    @classmethod
    def open(
        cls,
        folder: Path,
        manifest: Manifest,
        fingerprint: Mapping[str, Any],
        build_meta: str,
        with_matrices: bool,
    ) -> PreviousGeneration | None:
        """The generation ``manifest`` names, when the build that wrote it (its docstore's
        ``build_meta``) matches ``fingerprint`` where the encodings depend on it; else None."""
        path = folder / manifest.docstore_file
        if not path.is_file():
            return None
        docstore = DocStore(path, read_only=True)
        written_by = docstore.get_meta(build_meta) or {}
        fields = ENCODING_FIELDS + (MATRIX_FIELDS if with_matrices else ())
        mixed = recorded_encoder(docstore, build_meta) != fingerprint.get("encoder")
        if mixed or any(written_by.get(name) != fingerprint.get(name) for name in fields):
            log.info("%s: the index there was encoded otherwise; nothing is reused", folder)
            docstore.close()
            return None
        if not with_matrices:
            return cls(docstore, None, None)
        tokens = (
            TokenStore(folder / manifest.token_store_file) if manifest.token_store_file else None
        )
        return cls(docstore, tokens, str(fingerprint.get("reranker")))

    def encodings(self, documents: Sequence[Document]) -> dict[int, Encoding]:
        """See :func:`unchanged_encodings`; matrices from the token store the build wrote,
        or the docstore (documents added while it was served)."""
        lookup: MatrixLookup | None = None
        if self.fingerprint is not None:
            fingerprint = self.fingerprint

            def lookup(keys: list[int]) -> list[np.ndarray | None]:
                return stored_token_matrices(self.tokens, self.docstore, keys, fingerprint)

        return unchanged_encodings(self.docstore, documents, lookup)

    def close(self) -> None:
        self.docstore.close()
