"""``loupe index remove``: delete an index version for good: its folder and, for an index
whose vectors are in Qdrant, its collection (which deleting the folder alone would leave)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from index.manifest import Manifest, interrupted_generations
from index.qdrant_index import QdrantTarget, collection_name, drop_collections


@dataclass(frozen=True)
class Removed:
    folder: Path
    collection: str | None
    """The Qdrant collection deleted with the folder, if the index had one."""
    interrupted: tuple[str, ...] = ()
    """Collections of builds interrupted in the folder, deleted too (where they exist)."""


def remove_index(folder: Path, qdrant: QdrantTarget | None = None) -> Removed:
    """Delete the index in ``folder``: first its Qdrant collection (at ``qdrant`` if given,
    else where the manifest says), then the folder. A folder holding no index (no manifest)
    is refused, so that a mistyped path deletes nothing."""
    manifest = Manifest.load(folder)  # FileNotFoundError when it is no index
    collection = manifest.qdrant_collection if manifest.vectors_backend == "qdrant" else None
    interrupted: tuple[str, ...] = ()
    if collection is not None and manifest.qdrant_location is not None:
        interrupted_builds = interrupted_generations(folder, {manifest.docstore_file})
        left = [collection_name(g) for g in interrupted_builds]
        target = qdrant or QdrantTarget(manifest.qdrant_location)
        dropped = drop_collections(target, [collection, *left])
        interrupted = tuple(name for name in dropped if name != collection)
    shutil.rmtree(folder)
    return Removed(folder, collection, interrupted)
