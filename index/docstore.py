"""SQLite docstore: the source of truth for every acknowledged document.

Each document has a stable integer ``key`` (SQLite rowid, never reused) that the first-stage
index and the token store use as their id, and its first-stage vector as a float32 blob.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from index.lexical import DROP as LEXICAL_DROP
from index.lexical import LEXICAL_TABLE, match_expression
from index.lexical import SCHEMA as LEXICAL_SCHEMA
from index.metadata_filter import MetadataFilter, Scalar
from index.records import EXPANSION_KEY, Document
from index.token_quantization import TokenDtype, decode_tokens, encode_tokens, payload_layout

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    vector BLOB,
    expansion TEXT NOT NULL DEFAULT '',
    text_hash INTEGER
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    key INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    dim INTEGER NOT NULL,
    data BLOB NOT NULL,
    dtype TEXT NOT NULL DEFAULT 'float16',
    scales BLOB
);
CREATE TABLE IF NOT EXISTS removed_vectors (key INTEGER PRIMARY KEY);
"""
"""``removed_vectors``: keys whose documents are gone (deleted or replaced) while the vector
index as saved may still hold their vectors (a FAISS snapshot written before the delete, a
Qdrant that missed it, an index that cannot remove, as HNSW). The index hides them in
searches and forgets them here once their removal is saved (see index/live.py)."""

# Columns added to ``tokens`` after its first release; older docstores gain them on open.
_TOKEN_COLUMNS_ADDED = {
    "dtype": "ALTER TABLE tokens ADD COLUMN dtype TEXT NOT NULL DEFAULT 'float16'",
    "scales": "ALTER TABLE tokens ADD COLUMN scales BLOB",
}


@dataclass(frozen=True)
class StoredDocument:
    key: int
    document: Document


class DocStore:
    """A thread-safe SQLite (WAL) table of documents keyed by id and by integer key."""

    def __init__(self, path: str | Path, *, read_only: bool = False):
        self.path = Path(path)
        if read_only and not self.path.is_file():
            raise FileNotFoundError(f"no docstore at {self.path}")
        self.immutable = False
        """Opened as a file nothing changes (a read-only filesystem): no locks, no WAL."""
        if read_only:
            self._conn = self._open_read_only()
        else:
            self._conn = sqlite3.connect(f"file:{self.path}", uri=True, check_same_thread=False)
        self._lock = threading.RLock()
        self._writable = not read_only
        self._count: int | None = None
        """Documents stored, once counted, kept current by this connection's own writes
        (a writable docstore has one writer): ``COUNT(*)`` reads the whole id index, about
        10 ms a million documents, and the service asks after every write and listing page.
        None: not counted yet, or a write failed part-way."""
        if not read_only:
            with self._lock:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._add_expansion_column()
                self._conn.executescript(_SCHEMA)
                self._add_missing_token_columns()
                self._conn.commit()
                self._add_text_hashes()
                self._add_lexical_index()
        self.finds_texts = self._table_exists(TEXT_HASH_INDEX)
        """Whether documents can be found by their text (:meth:`keys_for_texts`): docstores
        written before gain that on their first writable open."""
        self.has_lexical = self._table_exists(LEXICAL_TABLE)
        """Whether the full-text index exists (docstores written before it gain it on their
        first writable open; an SQLite built without FTS5 has none)."""

    def _open_read_only(self) -> sqlite3.Connection:
        """A read-only connection: beside a writer, through the WAL (SQLite then needs to
        create the ``-shm`` and ``-wal`` files next to the database); where it cannot (a
        read-only filesystem, as a serving replica's mount), as an immutable file, which
        needs no files of its own, provided no write-ahead log holds changes."""
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            log_file = self.path.with_name(self.path.name + "-wal")
            if log_file.is_file() and log_file.stat().st_size > 0:
                raise OSError(
                    f"{self.path}: cannot open read-only ({exc}), and its write-ahead log "
                    f"{log_file.name} holds changes a reader cannot apply here; open the "
                    "index once writable (any loupe command, or loupe serve) to fold them in"
                ) from exc
        self.immutable = True
        return sqlite3.connect(
            f"file:{self.path}?mode=ro&immutable=1", uri=True, check_same_thread=False
        )

    def _table_exists(self, name: str) -> bool:
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name = ?", (name,)
            ).fetchone()
        return row is not None

    def _columns(self, table: str) -> set[str]:
        return {str(row[1]) for row in self._conn.execute(f"PRAGMA table_info({table})")}

    def _add_expansion_column(self) -> None:
        """Give a docstore written before doc2query queries were kept apart its
        ``expansion`` column, filled from each document's metadata."""
        if not self._table_exists("documents") or "expansion" in self._columns("documents"):
            return
        with self._lock, self._conn:
            self._conn.execute(
                "ALTER TABLE documents ADD COLUMN expansion TEXT NOT NULL DEFAULT ''"
            )
            rows = self._conn.execute(
                "SELECT key, doc_id, text, metadata FROM documents WHERE metadata LIKE ?",
                (f'%"{EXPANSION_KEY}"%',),
            ).fetchall()
            filled = [
                (_expansion(Document(doc_id, text, metadata=json.loads(metadata))), key)
                for key, doc_id, text, metadata in rows
            ]
            self._conn.executemany("UPDATE documents SET expansion = ? WHERE key = ?", filled)

    def _add_text_hashes(self) -> None:
        """Index documents by a hash of the text the encoders read (:func:`text_hash`), and
        hash those a docstore written before stores."""
        if self._table_exists(TEXT_HASH_INDEX):
            return
        with self._lock, self._conn:  # one transaction: all of it or nothing
            if "text_hash" not in self._columns("documents"):
                self._conn.execute("ALTER TABLE documents ADD COLUMN text_hash INTEGER")
            last = 0
            while rows := self._conn.execute(  # a batch at a time: a corpus may not fit memory
                "SELECT key, title, text FROM documents WHERE key > ? AND text_hash IS NULL"
                " ORDER BY key LIMIT ?",
                (last, HASH_BATCH),
            ).fetchall():
                if not last:
                    log.info("%s: hashing the texts of the stored documents", self.path)
                self._conn.executemany(
                    "UPDATE documents SET text_hash = ? WHERE key = ?",
                    [(text_hash(Document("", t, title).full_text), k) for k, title, t in rows],
                )
                last = int(rows[-1][0])
            self._conn.execute(f"CREATE INDEX {TEXT_HASH_INDEX} ON documents(text_hash)")

    def _add_lexical_index(self) -> None:
        """Create the full-text index and its triggers, indexing what is stored already (and
        re-create one written before it indexed the doc2query queries)."""
        outdated = self._table_exists(LEXICAL_TABLE) and (
            "expansion" not in self._columns(LEXICAL_TABLE)
        )
        if self._table_exists(LEXICAL_TABLE) and not outdated:
            return
        stored = len(self)
        if stored:
            log.info("%s: building the full-text index of %d stored documents", self.path, stored)
        try:
            with self._lock, self._conn:  # one transaction: all of it or nothing
                self._conn.execute("BEGIN")
                if outdated:
                    for statement in LEXICAL_DROP:
                        self._conn.execute(statement)
                for statement in LEXICAL_SCHEMA:
                    self._conn.execute(statement)
        except sqlite3.OperationalError as exc:  # e.g. an SQLite built without FTS5
            log.warning(
                "%s: no full-text index (%s); lexical search is unavailable", self.path, exc
            )

    def _add_missing_token_columns(self) -> None:
        present = self._columns("tokens")
        for column, statement in _TOKEN_COLUMNS_ADDED.items():
            if column not in present:
                self._conn.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> DocStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        with self._lock:
            if self._count is not None:
                return self._count
            count = int(self._conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0])
            if self._writable or self.immutable:  # else another process may be writing
                self._count = count
            return count

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One transaction under the lock; the count is recounted after one that fails."""
        with self._lock:
            try:
                with self._conn:
                    yield
            except BaseException:
                self._count = None
                raise

    def _counted(self, change: int) -> None:
        if self._count is not None:
            self._count += change

    def upsert(
        self,
        documents: Sequence[Document],
        vectors: np.ndarray | None = None,
        tokens: Sequence[np.ndarray] | None = None,
        tokens_fingerprint: str | None = None,
        tokens_dtype: TokenDtype = TokenDtype.float16,
    ) -> tuple[list[int], list[int]]:
        """Add documents, replacing any with the same id, in one transaction.

        ``tokens`` are the re-ranker's ``(tokens_i, dim)`` matrices of the documents, stored
        as ``tokens_dtype`` (see index/token_quantization.py) under the fingerprint of the
        model that computed them.

        Returns ``(new_keys, replaced_keys)``: a replaced document gets a new key, so the
        caller can drop the old key from derived indexes.
        """
        if vectors is not None and len(vectors) != len(documents):
            raise ValueError("one vector per document is required")
        if tokens is not None and (len(tokens) != len(documents) or not tokens_fingerprint):
            raise ValueError("one token matrix per document and a fingerprint are required")
        new_keys: list[int] = []
        replaced: list[int] = []
        with self._writing():
            for i, doc in enumerate(documents):
                row = self._conn.execute(
                    "SELECT key FROM documents WHERE doc_id = ?", (doc.id,)
                ).fetchone()
                if row is not None:
                    replaced.append(int(row[0]))
                    self._delete_keys([int(row[0])])
                blob = None if vectors is None else _to_blob(vectors[i])
                cursor = self._conn.execute(
                    "INSERT INTO documents"
                    " (doc_id, title, text, metadata, vector, expansion, text_hash)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        doc.id,
                        doc.title,
                        doc.text,
                        json.dumps(doc.metadata),
                        blob,
                        _expansion(doc),
                        text_hash(doc.full_text),
                    ),
                )
                key = int(cursor.lastrowid or 0)
                new_keys.append(key)
                self._counted(1)
                if tokens is not None:
                    matrix = np.asarray(tokens[i])
                    payload, scales = encode_tokens(matrix, tokens_dtype)
                    self._conn.execute(
                        "INSERT INTO tokens (key, fingerprint, dim, data, dtype, scales)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            key,
                            tokens_fingerprint,
                            int(matrix.shape[1]),
                            payload.tobytes(),
                            tokens_dtype.value,
                            None if scales is None else scales.tobytes(),
                        ),
                    )
        return new_keys, replaced

    def delete(self, doc_id: str) -> int | None:
        """Delete a document by id; returns its key, or None if there was none."""
        return self.delete_many([doc_id]).get(doc_id)

    def delete_many(self, doc_ids: Sequence[str]) -> dict[str, int]:
        """Delete documents by id in one transaction; returns the keys of those there were."""
        with self._writing():
            found = self.keys_for_ids(doc_ids)
            self._delete_keys(list(found.values()))
        return found

    def delete_matching(self, where: MetadataFilter) -> np.ndarray:
        """Delete, in one transaction, the documents whose metadata passes ``where``; returns
        their keys ``(n,)``, ascending."""
        with self._writing():
            keys = self.keys_matching(where)
            self._delete_keys(keys.tolist())
        return keys

    def _delete_keys(self, keys: Sequence[int]) -> None:
        """Delete the keys' documents and token matrices (in the caller's transaction)."""
        rows = [(int(key),) for key in keys]
        deleted = self._conn.executemany("DELETE FROM documents WHERE key = ?", rows).rowcount
        self._counted(-max(0, deleted))
        self._conn.executemany("DELETE FROM tokens WHERE key = ?", rows)
        self._conn.executemany("INSERT OR IGNORE INTO removed_vectors (key) VALUES (?)", rows)

    def removed_vector_keys(self) -> np.ndarray:
        """Keys ``(n,)``, ascending, of documents gone whose vectors the saved vector index
        may still hold (none in a docstore written before this was kept)."""
        if not self._table_exists("removed_vectors"):
            return np.zeros(0, dtype=np.int64)
        with self._lock:
            rows = self._conn.execute("SELECT key FROM removed_vectors ORDER BY key").fetchall()
        return np.asarray([row[0] for row in rows], dtype=np.int64)

    def forget_removed_vectors(
        self, keys: Iterable[int] | None = None, *, keep: Iterable[int] = ()
    ) -> None:
        """Forget removed ``keys`` (default: all recorded), their removal from the vector
        index being saved, all but those in ``keep``."""
        kept = {int(key) for key in keep}
        recorded = self.removed_vector_keys().tolist() if keys is None else keys
        gone = [(int(k),) for k in recorded if int(k) not in kept]
        with self._writing():
            self._conn.executemany("DELETE FROM removed_vectors WHERE key = ?", gone)

    def get_tokens(self, keys: Iterable[int], fingerprint: str) -> dict[int, np.ndarray]:
        """Stored ``(tokens_i, dim)`` matrices of the keys that have them under
        ``fingerprint``: float16 as stored, float32 where they were quantised."""
        keys = [int(k) for k in keys]
        found: dict[int, np.ndarray] = {}
        with self._lock:
            # A read-only docstore written before the dtype and scales columns existed. Asked
            # on every call (microseconds): a writer opening the file later adds them.
            legacy = "dtype" not in self._columns("tokens")
            columns = "'float16', NULL" if legacy else "dtype, scales"
            rows = self._select_in(
                f"SELECT key, dim, data, {columns} FROM tokens"
                " WHERE fingerprint = ? AND key IN (?...)",
                keys,
                [fingerprint],
            )
        for key, dim, data, dtype, scales in rows:
            found[int(key)] = _decode_token_row(int(dim), data, TokenDtype(dtype), scales)
        return found

    def _select_in(
        self, sql: str, values: Sequence[Any], params: Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Rows of ``sql``, whose ``IN (?...)`` lists ``values``, asked 900 values at a time
        (under the bound-parameter limit of older SQLite builds); ``params`` bind first."""
        rows: list[tuple[Any, ...]] = []
        with self._lock:
            for start in range(0, len(values), 900):
                chunk = values[start : start + 900]
                query = sql.replace("(?...)", "(" + ",".join("?" * len(chunk)) + ")")
                rows += self._conn.execute(query, [*params, *chunk]).fetchall()
        return rows

    def get_by_keys(self, keys: Iterable[int]) -> dict[int, Document]:
        """Documents for the keys that exist (missing keys are simply absent)."""
        rows = self._select_in(
            f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE key IN (?...)",
            [int(k) for k in keys],
        )
        return {stored.key: stored.document for stored in map(_stored_document, rows)}

    def page(
        self, after_id: str | None, limit: int, where: MetadataFilter | None = None
    ) -> list[StoredDocument]:
        """Up to ``limit`` documents with ids after ``after_id`` (from the first if None)
        whose metadata passes ``where``, if given, in id order (SQLite's binary order of the
        UTF-8 bytes). Replacing a document keeps its id, so paging on from the last id seen
        meets every document stored throughout exactly once."""
        condition, params = where.where("metadata") if where is not None else ("1", [])
        after = () if after_id is None else (after_id,)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_DOCUMENT_COLUMNS} FROM documents"
                f" WHERE {'doc_id > ?' if after else '1'} AND {condition}"
                " ORDER BY doc_id LIMIT ?",
                (*after, *params, limit),
            ).fetchall()
        return [_stored_document(row) for row in rows]

    def get(self, doc_id: str) -> StoredDocument | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE doc_id = ?", (doc_id,)
            ).fetchone()
        return _stored_document(row) if row is not None else None

    def keys_for_texts(self, texts: Sequence[str]) -> list[int | None]:
        """By position: the key of a document whose :attr:`~Document.full_text` is exactly
        that text (any one, where several are), or None (none, or a docstore that cannot
        find texts yet: see :attr:`finds_texts`)."""
        if not self.finds_texts or not texts:
            return [None] * len(texts)
        hashes = [text_hash(text) for text in texts]
        rows = self._select_in(
            "SELECT key, title, text FROM documents WHERE text_hash IN (?...)", sorted(set(hashes))
        )
        by_text = {Document("", text, title).full_text: int(key) for key, title, text in rows}
        return [by_text.get(text) for text in texts]

    def get_by_ids(self, doc_ids: Iterable[str]) -> dict[str, StoredDocument]:
        """Stored documents (with their keys) for the ids that exist, in one query."""
        rows = self._select_in(
            f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE doc_id IN (?...)",
            sorted(set(doc_ids)),
        )
        return {stored.document.id: stored for stored in map(_stored_document, rows)}

    def keys_for_ids(self, doc_ids: Iterable[str]) -> dict[str, int]:
        rows = self._select_in(
            "SELECT doc_id, key FROM documents WHERE doc_id IN (?...)", list(doc_ids)
        )
        return {str(d): int(k) for d, k in rows}

    def iter_vectors(
        self, after_key: int = 0, batch: int = 4096
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(keys (n,), vectors (n, dim))`` chunks for rows with key > ``after_key``."""
        last = after_key
        while True:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT key, vector FROM documents WHERE key > ? AND vector IS NOT NULL"
                    " ORDER BY key LIMIT ?",
                    (last, batch),
                ).fetchall()
            if not rows:
                return
            keys = np.array([r[0] for r in rows], dtype=np.int64)
            vectors = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
            yield keys, vectors
            last = int(keys[-1])

    def all_keys(self) -> np.ndarray:
        """Every stored key ``(n,)``, ascending."""
        with self._lock:
            rows = self._conn.execute("SELECT key FROM documents ORDER BY key").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def iter_documents(self, batch: int = 4096) -> Iterator[list[StoredDocument]]:
        """Every stored document, in key order, ``batch`` at a time."""
        last = 0
        while True:
            with self._lock:
                rows = self._conn.execute(
                    f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE key > ? ORDER BY key LIMIT ?",
                    (last, batch),
                ).fetchall()
            if not rows:
                return
            stored = [_stored_document(row) for row in rows]
            yield stored
            last = stored[-1].key

    def keys_matching(self, where: MetadataFilter) -> np.ndarray:
        """Keys ``(n,)``, ascending, of the documents whose metadata passes ``where``."""
        condition, params = where.where("metadata")
        with self._lock:
            rows = self._conn.execute(
                f"SELECT key FROM documents WHERE {condition} ORDER BY key", params
            ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def vectors_for_keys(self, keys: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(keys (n,), vectors (n, dim))`` of the given keys that exist and have a vector."""
        rows = self._select_in(
            "SELECT key, vector FROM documents WHERE key IN (?...) AND vector IS NOT NULL",
            [int(k) for k in keys],
        )
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        vectors = np.stack([np.frombuffer(blob, dtype=np.float32) for _, blob in rows])
        return np.array([int(key) for key, _ in rows], dtype=np.int64), vectors

    def lexical_search(
        self, queries: Sequence[str], k: int, where: MetadataFilter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """BM25 top-k of the full-text index (see index/lexical.py): ``(scores (q, k), keys
        (q, k))``, higher scores better, padded with -inf and -1; with ``where``, among the
        documents whose metadata passes it only."""
        if not self.has_lexical:
            raise ValueError(
                f"{self.path} has no full-text index: open the index once writable "
                "(loupe serve, or any loupe command on it) with an SQLite that has FTS5"
            )
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        keys = np.full((len(queries), k), -1, dtype=np.int64)
        # Unfiltered: FTS5 ranks and stops at k. Filtered: every match is scored first, then
        # joined with the documents that pass (a rowid IN (...) constraint would make FTS5
        # look each candidate up alone: 870 ms instead of 5 on SciFact). The subquery's
        # LIMIT -1 keeps SQLite from flattening it into the join, so the matches come first
        # whatever the planner estimates; unlike MATERIALIZED it needs no SQLite >= 3.35.
        params: list[Scalar] = []
        sql = (
            f"SELECT rowid, -bm25({LEXICAL_TABLE}) FROM {LEXICAL_TABLE}"
            f" WHERE {LEXICAL_TABLE} MATCH ? ORDER BY rank LIMIT ?"
        )
        if where is not None:
            condition, params = where.where("documents.metadata")
            sql = (
                "SELECT matched.key, matched.score FROM (SELECT rowid AS key,"
                f" -bm25({LEXICAL_TABLE}) AS score FROM {LEXICAL_TABLE}"
                f" WHERE {LEXICAL_TABLE} MATCH ? LIMIT -1) AS matched JOIN documents"
                f" ON documents.key = matched.key WHERE {condition}"
                " ORDER BY matched.score DESC LIMIT ?"
            )
        for row, query in enumerate(queries):
            expression = match_expression(query)
            if expression is None:
                continue
            with self._lock:
                found = self._conn.execute(sql, [expression, *params, k]).fetchall()
            for column, (key, score) in enumerate(found):
                keys[row, column], scores[row, column] = int(key), float(score)
        return scores, keys

    def max_key(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT MAX(key) FROM documents").fetchone()
        return int(row[0] or 0)

    def set_meta(self, name: str, value: Any) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, json.dumps(value))
            )

    def get_meta(self, name: str, default: Any = None) -> Any:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return default if row is None else json.loads(row[0])

    def checkpoint(self) -> None:
        """Fold the WAL into the main file (before the file is copied or checksummed)."""
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


_DOCUMENT_COLUMNS = "key, doc_id, title, text, metadata"
"""The columns :func:`_stored_document` reads, in its order."""


def _stored_document(row: tuple[Any, ...]) -> StoredDocument:
    """A ``_DOCUMENT_COLUMNS`` row as a :class:`StoredDocument`."""
    key, doc_id, title, text, metadata = row
    return StoredDocument(int(key), Document(doc_id, text, title, json.loads(metadata)))


TEXT_HASH_INDEX = "documents_text_hash"
HASH_BATCH = 10_000
"""Documents whose texts an older docstore's first writable open hashes at a time."""


def text_hash(text: str) -> int:
    """A signed 64-bit hash of a text (BLAKE2b), which SQLite stores as an integer.

    >>> text_hash("A loupe magnifies.") == text_hash("A loupe magnifies."), text_hash("")
    (True, -1970711489451281740)
    """
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _expansion(document: Document) -> str:
    """What the full-text index reads of a document's doc2query queries.

    >>> _expansion(Document("d", "t", metadata={"doc2query": ["q one", "q two"]}))
    'q one q two'
    """
    return " ".join(document.expansion)


def _to_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def _decode_token_row(dim: int, data: bytes, dtype: TokenDtype, scales: bytes | None) -> np.ndarray:
    """One ``tokens`` row back to its ``(tokens, dim)`` matrix."""
    kind, width = payload_layout(dtype, dim)
    payload = np.frombuffer(data, dtype=kind).reshape(-1, width)
    row_scales = None if scales is None else np.frombuffer(scales, dtype=np.float16)
    return decode_tokens(payload, row_scales, dtype, dim)
