"""Inputs for hard-prompt synthetic MS MARCO queries (reports/lite.md, synthetic queries).

Writes, under ``--out``:

- ``shots.jsonl``: the first ``--shots`` MS MARCO training triples as {passage, query} shots
  for ``loupe generate --hard-prompt``;
- ``train-passages.jsonl``: every other MS MARCO *training* passage in the shared data (the
  triples' positives and negatives and ``collection.first100.tsv``), deduplicated, as a corpus
  for ``loupe generate``. These passages were never retrieved for a DL19 query;
- ``dl19-run-passages.txt``: the DL19 corpus passages that some first-stage run retrieved,
  in a seeded random order, and ``dl19-run-corpus.jsonl``, those passages' texts (the corpus
  random negatives are drawn from). Passages that only NOS-IRv3 contributed (relevant
  passages no run found) are left out, since their presence in the corpus reveals relevance.

Texts get the same mojibake repair as the DL19 corpus (``latin-1`` bytes read back as UTF-8
when that round-trips).

    PYTHONPATH=. python bench/msmarco_synthetic_inputs.py --out runs/msmarco-synth
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from evaluation.datasets import data_root


def repair_mojibake(text: str) -> str:
    """Undo UTF-8 read as latin-1, when the text round-trips; otherwise keep it.

    >>> repair_mojibake("donâ\\x80\\x99t")
    'don’t'
    >>> repair_mojibake("café")
    'café'
    """
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/msmarco-synth"))
    parser.add_argument("--shots", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = data_root()
    args.out.mkdir(parents=True, exist_ok=True)
    sample = data / "msmarco-train-triples-sample"
    triples = [
        [repair_mojibake(part) for part in line.rstrip("\n").split("\t")]
        for line in (sample / "triples.train.sample100.tsv").read_text("utf-8").splitlines()
    ]
    shots = triples[: args.shots]
    with (args.out / "shots.jsonl").open("w", encoding="utf-8") as f:
        for query, positive, _ in shots:
            f.write(json.dumps({"passage": positive, "query": query}, ensure_ascii=False) + "\n")
    skip = {positive for _, positive, _ in shots}
    passages: dict[str, str] = {}
    for _, positive, negative in triples[args.shots :]:
        for text in (positive, negative):
            if text not in skip:
                passages.setdefault(text, f"tri-{len(passages)}")
    for line in (sample / "collection.first100.tsv").read_text("utf-8").splitlines():
        pid, _, text = line.partition("\t")
        text = repair_mojibake(text)
        if text and text not in skip and text not in passages:
            passages[text] = f"col-{pid}"
    with (args.out / "train-passages.jsonl").open("w", encoding="utf-8") as f:
        for text, pid in passages.items():
            f.write(json.dumps({"_id": pid, "title": "", "text": text}, ensure_ascii=False) + "\n")
    dl19 = data / "trec-dl-2019-passage"
    retrieved = sorted({line.split()[2] for run in dl19.glob("run.*.trec") for line in run.open()})
    random.Random(args.seed).shuffle(retrieved)
    (args.out / "dl19-run-passages.txt").write_text("\n".join(retrieved) + "\n")
    keep = set(retrieved)
    with (
        (dl19 / "corpus.jsonl").open(encoding="utf-8") as source,
        (args.out / "dl19-run-corpus.jsonl").open("w", encoding="utf-8") as target,
    ):
        for line in source:
            row = json.loads(line)
            if row["_id"] in keep:
                row.pop("sources", None)
                target.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(
        f"{len(shots)} shots, {len(passages)} training passages, {len(retrieved)} DL19 run passages"
    )


if __name__ == "__main__":
    main()
