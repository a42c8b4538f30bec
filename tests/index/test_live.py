from __future__ import annotations

from pathlib import Path

import numpy as np

from index.live import LiveIndex
from index.records import Document


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
