"""Does synthetic data help the re-ranker? MaxSim (d128, frozen MiniLM) trained on the same
real data (SciFact train with dense hard negatives, MS MARCO triples sample) alone, plus
hard-prompt queries, plus SoftSRV queries (``loupe generate`` pair files, mixed at ``--ratio``
synthetic examples per real one, negatives mined from the SciFact index), the same number of
steps; evaluated like reports/lite.md on TREC DL19 (BM25 top-100) and SciFact test (dense
top-100) from cached token states.

    PYTHONPATH=. python bench/synthetic_augmentation.py --seeds 0 1 --steps 600 \
        --pairs hard=runs/softsrv-synthetic/scifact-hard-prompt.jsonl \
        --pairs softsrv=runs/softsrv-synthetic/scifact-softsrv-mlp.jsonl

Pairs over another corpus name it after an ``@`` (``NAME=PAIRS@CORPUS``); their negatives
are then drawn at random from that corpus (``--random-negatives`` of them per query), since
there is no index of it to mine. ``--kinds`` trains other scorers the same way.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.lite_experiment import MEASURES, eval_sets, rerank_from_cache, training_sources
from evaluation.datasets import data_root
from evaluation.metrics import evaluate, format_table
from models.late_interaction import LateInteractionModel
from models.lite import ScorerConfig
from training.lite_config import LiteTrainConfig
from training.lite_job import train_lite
from training.run_config import SyntheticSource
from training.token_cache import TokenCache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/synthetic-augmentation"))
    parser.add_argument("--scifact-index", type=Path, default=Path("runs/scifact-index"))
    parser.add_argument(
        "--negatives", type=Path, default=Path("runs/lite-exp/scifact-train-dense50.trec")
    )
    parser.add_argument("--cache", type=Path, default=Path("runs/lite-exp/token-cache.npz"))
    parser.add_argument("--pairs", action="append", default=[], help="NAME=PAIRS.jsonl[@CORPUS]")
    parser.add_argument("--random-negatives", type=int, default=8)
    parser.add_argument("--kinds", nargs="+", default=["maxsim"])
    parser.add_argument("--skip-real", action="store_true", help="only the synthetic arms")
    parser.add_argument("--ratio", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    data = data_root()
    sci = data / "beir-scifact"
    real = training_sources(data, args.negatives)
    conditions: dict[str, list] = {} if args.skip_real else {"real": real}
    for item in args.pairs:
        name, _, spec = item.partition("=")
        path, _, corpus = spec.partition("@")
        synthetic = (
            SyntheticSource(
                pairs=Path(path),
                corpus=Path(corpus),
                ratio=args.ratio,
                negatives_per_query=args.random_negatives,
            )
            if corpus
            else SyntheticSource(
                pairs=Path(path), corpus=sci, ratio=args.ratio, negatives_index=args.scifact_index
            )
        )
        conditions[f"real+{name}"] = [*real, synthetic]
    sets = eval_sets(data, args.scifact_index)
    rows: dict[str, dict[str, float]] = {}
    results = args.out / "results.json"
    if results.is_file():  # arms of earlier invocations stay in the table
        rows = json.loads(results.read_text())["metrics"]
    for name, sources in conditions.items():
        for kind, seed in [(k, s) for k in args.kinds for s in args.seeds]:
            label = name if kind == "maxsim" else f"{name} {kind}"
            config = LiteTrainConfig(
                out=args.out / f"{label.replace(' ', '-')}-s{seed}",
                data=sources,
                dim=128,
                scorer=ScorerConfig(kind=kind),
                max_steps=args.steps,
                seed=seed,
                cache=args.cache,
                eval_every=100,
                patience=4,
            )
            train_lite(config)
            model = LateInteractionModel.load(config.out / "best")
            cache = TokenCache.load(args.cache)
            for set_name, spec in sets.items():
                run, _ = rerank_from_cache(model, cache, spec)
                result = evaluate(spec.qrels, run, MEASURES, query_ids=spec.queries)
                rows[f"{set_name} | {label} | seed {seed}"] = result.aggregate
            print(format_table(rows, MEASURES), flush=True)
            results.write_text(
                json.dumps({"metrics": rows, "steps": args.steps, "ratio": args.ratio}, indent=2)
            )


if __name__ == "__main__":
    main()
