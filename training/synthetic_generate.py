"""``loupe generate``: synthetic (query, passage) training pairs for unlabeled passages.

Passages are read from a corpus (optionally only listed ids, or without those judged in
given qrels), batched, and each batch gets ``num_per_prompt`` sampled queries from a
:class:`~training.synthetic_generators.QueryGenerator`. Each batch's RNG seed derives from
the run seed and the batch's passage ids, so a run gives the same queries whether or not it
was interrupted: rows are appended batch by batch, and a rerun skips passages already in
the file. An optional consistency filter marks queries whose passage is not in the first
stage's top k (``kept`` false).
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from index.readers.corpus import read_corpus
from index.readers.trec import read_qrels
from index.records import Document
from models.prompted_lm import SamplingConfig
from training.consistency import FirstStage, consistency_ranks
from training.synthetic_generators import QueryGenerator
from training.synthetic_pairs import (
    SyntheticPair,
    append_pairs,
    qrels_path,
    read_pairs,
    trim_partial_line,
    write_qrels,
)


@dataclass(frozen=True)
class GenerateConfig:
    """What to generate for and how.

    Attributes:
        corpus: corpus file or BEIR folder.
        out: the pair file (JSONL) to append to; the qrels go beside it.
        doc_ids_file: only these passage ids (one per line), in that order.
        exclude_qrels: skip passages judged in these qrels files (e.g. the test set's).
        limit: at most this many passages (after the selection above).
        filter_top_k: keep a query only when its passage is in the first stage's top k.
    """

    corpus: Path
    out: Path
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    batch_size: int = 8
    seed: int = 0
    doc_ids_file: Path | None = None
    exclude_qrels: tuple[Path, ...] = ()
    limit: int | None = None
    filter_top_k: int | None = None
    show_progress: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.filter_top_k is not None and self.filter_top_k < 1:
            raise ValueError("filter_top_k must be at least 1")


@dataclass
class GenerateStats:
    passages: int
    """Passages generated for in this call (not counting those already done)."""
    skipped: int
    """Passages already in the pair file."""
    queries: int
    kept: int
    generation_seconds: float
    filter_seconds: float

    @property
    def queries_per_second(self) -> float:
        return self.queries / self.generation_seconds if self.generation_seconds else 0.0


def select_passages(config: GenerateConfig) -> list[Document]:
    """The corpus passages to generate for, in corpus order (or the id file's order)."""
    docs = list(read_corpus(config.corpus))
    if config.doc_ids_file is not None:
        by_id = {d.id: d for d in docs}
        wanted = config.doc_ids_file.read_text().split()
        unknown = [d for d in wanted if d not in by_id]
        if unknown:
            raise ValueError(
                f"{config.doc_ids_file}: {len(unknown)} ids are not in {config.corpus}, "
                f"e.g. {unknown[0]!r}"
            )
        docs = [by_id[d] for d in dict.fromkeys(wanted)]
    judged = {d for path in config.exclude_qrels for q in read_qrels(path).values() for d in q}
    docs = [d for d in docs if d.id not in judged]
    return docs[: config.limit] if config.limit is not None else docs


def batch_seed(seed: int, doc_ids: list[str]) -> int:
    """A batch's RNG seed: fixed by the run seed and its passages.

    >>> batch_seed(0, ["a", "b"]) == batch_seed(0, ["a", "b"]) != batch_seed(1, ["a", "b"])
    True
    """
    return zlib.crc32(f"{seed}\t{'|'.join(doc_ids)}".encode())


def _check_meta(path: Path, meta: dict[str, object]) -> None:
    """A rerun must use the settings of the file it resumes."""
    if path.is_file():
        old = json.loads(path.read_text())
        if old != meta:
            raise ValueError(
                f"{path} was written with other settings ({old}); "
                f"pass another --out or the same settings ({meta})"
            )
    else:
        path.write_text(json.dumps(meta, indent=2))


def generate_pairs(
    config: GenerateConfig, generator: QueryGenerator, first_stage: FirstStage | None = None
) -> GenerateStats:
    """Generate, append and (when a first stage is given) filter; rewrite the qrels."""
    if config.filter_top_k is not None and first_stage is None:
        raise ValueError("filter_top_k needs a first stage (an index or the corpus)")
    config.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "generator": generator.name,
        "sampling": asdict(config.sampling),
        "seed": config.seed,
        "batch_size": config.batch_size,
        "filter_top_k": config.filter_top_k,
    }
    _check_meta(config.out.with_suffix(".meta.json"), meta)
    trim_partial_line(config.out)
    done = (
        {p.doc_id for p in read_pairs(config.out, include_dropped=True)}
        if config.out.is_file()
        else set()
    )
    passages = select_passages(config)
    todo = [d for d in passages if d.id not in done]
    stats = GenerateStats(0, len(passages) - len(todo), 0, 0, 0.0, 0.0)
    with tqdm(
        total=len(passages),
        initial=stats.skipped,
        desc=f"generating ({generator.name})",
        unit="passage",
        disable=not config.show_progress,
    ) as bar:
        for start in range(0, len(todo), config.batch_size):
            batch = todo[start : start + config.batch_size]
            ids = [d.id for d in batch]
            torch.manual_seed(batch_seed(config.seed, ids))
            started = time.perf_counter()
            queries = generator.generate([d.full_text for d in batch], config.sampling)
            stats.generation_seconds += time.perf_counter() - started
            flat = [(d, j, q) for d, qs in zip(ids, queries, strict=True) for j, q in enumerate(qs)]
            ranks: list[int | None] = [None] * len(flat)
            if first_stage is not None and config.filter_top_k is not None:
                started = time.perf_counter()
                ranks = consistency_ranks(
                    first_stage,
                    [q for _, _, q in flat],
                    [d for d, _, _ in flat],
                    config.filter_top_k,
                )
                stats.filter_seconds += time.perf_counter() - started
            rows = [
                SyntheticPair(
                    query_id=f"syn-{doc}-{j}",
                    query=query,
                    doc_id=doc,
                    generator=generator.name,
                    kept=bool(query) and (config.filter_top_k is None or rank is not None),
                    first_stage_rank=rank,
                )
                for (doc, j, query), rank in zip(flat, ranks, strict=True)
            ]
            append_pairs(config.out, rows)
            stats.passages += len(batch)
            stats.queries += len(rows)
            stats.kept += sum(r.kept for r in rows)
            bar.update(len(batch))
            bar.set_postfix(q_per_s=f"{stats.queries_per_second:.2f}")
    if config.out.is_file():
        write_qrels(read_pairs(config.out), qrels_path(config.out))
    return stats
