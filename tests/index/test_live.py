from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from index.live import LiveIndex
from index.records import Document
from tests.index.vectors import ranked_documents


def test_add_delete_snapshot_and_recover(tmp_path: Path) -> None:
    folder = tmp_path / "live"
    live = LiveIndex.open_or_create(folder, model="default", dimension=4)
    eye = np.eye(4, dtype=np.float32)
    live.add([Document(str(i), f"text {i}") for i in range(3)], eye[:3])
    live.snapshot()
    # Written after the snapshot: only in the docstore until the next one.
    live.add([Document("3", "text 3")], eye[3:])
    live.add([Document("0", "replaced")], eye[1:2])
    assert live.delete("2") and not live.delete("2")
    live.close()  # as if the process died here

    reopened = LiveIndex.open(folder)
    assert len(reopened) == 3
    hits = reopened.search_vectors(eye[3:], k=1)[0]
    assert hits[0].document.id == "3"
    ids = {h.document.id for h in reopened.search_vectors(eye[1:2], k=4)[0]}
    assert ids == {"0", "1", "3"}
    stored = reopened.docstore.get("0")
    assert stored is not None and stored.document.text == "replaced"


def test_hnsw_deletes_are_hidden(tmp_path: Path) -> None:
    live = LiveIndex.open_or_create(tmp_path / "h", model="m", dimension=4, factory="HNSW8")
    eye = np.eye(4, dtype=np.float32)
    live.add([Document(str(i), "t") for i in range(4)], eye)
    live.delete("1")
    hits = live.search_vectors(eye[1:2], k=3)[0]
    assert "1" not in {h.document.id for h in hits} and len(hits) == 3


def _folder_state(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, but SQLite's -wal and -shm (a reader beside no writer leaves them
    empty)."""
    return {
        p.name: p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    }


def test_a_read_only_index_searches_and_refuses_every_write(tmp_path: Path) -> None:
    """Two read-only openings of one folder search it as the writer did, catch up documents
    stored after the snapshot, refuse writes, and change no file in it."""
    import pytest

    from index.errors import ReadOnlyIndexError
    from index.metadata_filter import MetadataFilter

    folder = tmp_path / "live"
    live = LiveIndex.open_or_create(folder, model="default", dimension=4)
    eye = np.eye(4, dtype=np.float32)
    live.add([Document(str(i), f"text {i}", metadata={"n": i}) for i in range(3)], eye[:3])
    live.snapshot()
    live.add([Document("3", "text 3", metadata={"n": 3})], eye[3:])  # after the snapshot
    expected = [[h.document.id for h in row] for row in live.search_vectors(eye, k=4)]
    live.close()
    before = _folder_state(folder)

    replicas = [LiveIndex.open(folder, read_only=True) for _ in range(2)]
    for replica in replicas:
        assert [[h.document.id for h in row] for row in replica.search_vectors(eye, k=4)] == (
            expected
        )
        assert len(replica) == 4
        assert [h.document.id for h in replica.search_lexical(["text"], 1)[0]]
        where = MetadataFilter.from_mapping({"n": 2})
        assert [h.document.id for h in replica.search_vectors(eye[:1], 4, where)[0]] == ["2"]
        with pytest.raises(ReadOnlyIndexError, match="read-only"):
            replica.add([Document("9", "new")], eye[:1])
        for write in (
            lambda r=replica: r.delete("0"),
            lambda r=replica, w=where: r.delete_matching(w),
            lambda r=replica: r.snapshot(),
        ):
            with pytest.raises(ReadOnlyIndexError):
                write()
        assert len(replica) == 4
    for replica in replicas:
        replica.close()
    assert _folder_state(folder) == before


def test_a_read_only_docstore_on_read_only_media_opens_immutable(
    tmp_path: Path, monkeypatch
) -> None:
    """Where SQLite cannot create the files a WAL reader needs (a read-only mount), the
    docstore opens the file as immutable; not when a write-ahead log holds changes it would
    miss."""
    import sqlite3

    import pytest

    import index.docstore as docstore_module
    from index.docstore import DocStore

    path = tmp_path / "docs.sqlite"
    with DocStore(path) as store:
        store.upsert([Document("a", "text a"), Document("b", "text b")])
    real_connect = sqlite3.connect

    class Unreadable:
        def execute(self, *args: object) -> None:
            raise sqlite3.OperationalError("unable to open database file")

        def close(self) -> None:
            pass

    def read_only_media(database: str, **kwargs: Any) -> object:
        return real_connect(database, **kwargs) if "immutable=1" in database else Unreadable()

    monkeypatch.setattr(docstore_module.sqlite3, "connect", read_only_media)
    with DocStore(path, read_only=True) as store:
        assert store.immutable and len(store) == 2
        found = store.get("b")
        assert found is not None and found.document.text == "text b"
    (tmp_path / "docs.sqlite-wal").write_bytes(b"pending changes")
    with pytest.raises(OSError, match="write-ahead log"):
        DocStore(path, read_only=True)


def test_deletes_a_crash_kept_out_of_the_snapshot_take_no_place(tmp_path: Path) -> None:
    folder = tmp_path / "live"
    live = LiveIndex.open_or_create(folder, model="m", dimension=4)
    query = ranked_documents(live)
    live.snapshot()
    assert live.delete_many(["0", "1"]) == ["0", "1"]
    live.close()  # as if the process died here: the snapshot still holds "0" and "1"

    reopened = LiveIndex.open(folder)
    assert [h.document.id for h in reopened.search_vectors(query, k=3)[0]] == ["2", "3", "4"]
    reopened.snapshot()
    assert reopened.docstore.removed_vector_keys().tolist() == []  # the snapshot lacks them
    reopened.close()
    again = LiveIndex.open(folder)
    assert [h.document.id for h in again.search_vectors(query, k=3)[0]] == ["2", "3", "4"]
    again.close()


def test_hnsw_deletes_stay_hidden_after_a_restart(tmp_path: Path) -> None:
    folder = tmp_path / "h"
    live = LiveIndex.open_or_create(folder, model="m", dimension=4, factory="HNSW8")
    query = ranked_documents(live)
    live.delete_many(["0", "1"])
    live.snapshot()
    live.close()

    for read_only in (False, True):
        reopened = LiveIndex.open(folder, read_only=read_only)
        hits = reopened.search_vectors(query, k=3)[0]
        assert [h.document.id for h in hits] == ["2", "3", "4"], read_only
        assert len(reopened.docstore.removed_vector_keys()) == 2  # HNSW still holds them
        reopened.close()
