"""SoftSRV vs a hard prompt on SciFact: train the three soft-prompt variants on SciFact train
(passage, query) pairs with a frozen causal LM (the packaged Gemma 3 270M by default),
generate one query for each of held-out SciFact test passages with every variant and with the
few-shot hard-prompt baseline, and compare each set with the real test queries of those
passages: Fréchet distance and MAUVE between MiniLM embedding sets, length and vocabulary
statistics, sample generations, generation queries/s and prompt-training examples/s.

    nice -n 10 .venv/bin/python bench/softsrv_experiment.py --quick      # minutes: a smoke run
    nice -n 10 .venv/bin/python bench/softsrv_experiment.py --variants mlp   # one variant
    nice -n 10 .venv/bin/python bench/softsrv_experiment.py                  # everything

Rerunnable: a variant whose ``summary.json`` exists is not retrained and generation resumes,
so a long run can be split across invocations (``--variants``, ``--no-hard-prompt``); the
report covers every system found in the output folder. Seeds: ``--seed`` (training, batch
order, prompt initialisation), ``--sample-seed`` (which test passages and shots),
``--generation-seed`` (sampling). Data: ``$LOUPE_DATA_DIR/beir-scifact``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import linalg

from index.readers.corpus import read_corpus
from index.readers.queries import read_queries
from index.readers.trec import read_qrels
from models.causal_lm import PACKAGED_GEMMA, CausalLM, load_causal_lm
from models.encoder import EncoderConfig, TextEncoder
from models.prompted_lm import SamplingConfig
from models.softsrv import load_soft_prompt
from training.consistency import consistency_ranks, index_first_stage
from training.examples import split_by_query
from training.gmlm_data import QrelsPairs
from training.run_config import default_data_dir
from training.softsrv_config import SoftSRVTrainConfig
from training.softsrv_data import ContextCache, load_pairs
from training.softsrv_job import SoftSRVTraining, train_softsrv
from training.synthetic_generate import GenerateConfig, generate_pairs
from training.synthetic_generators import HardPromptGenerator, Shot, SoftSRVGenerator
from training.synthetic_pairs import read_pairs

VARIANTS = ("noncontextual", "mixture", "mlp")


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two ``(n, d)`` embedding sets.

    >>> x = np.random.default_rng(0).normal(size=(500, 3))
    >>> round(frechet_distance(x, x), 6)
    0.0
    """
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    root = root.real
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))
    return max(value, 0.0)


def mauve_score(p: np.ndarray, q: np.ndarray, seed: int) -> float | None:
    """MAUVE (``mauve-text``) on given features; None when the package is missing."""
    try:
        import mauve
    except ImportError:
        return None
    out = mauve.compute_mauve(p_features=p, q_features=q, seed=seed, verbose=False)
    return float(out.mauve)


WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def text_stats(texts: list[str], reference: list[str]) -> dict[str, float]:
    """Length and vocabulary statistics of a query set (words: lower-cased alphanumerics)."""
    words = [WORD.findall(t.lower()) for t in texts]
    flat = [w for ws in words for w in ws]
    ref_vocab = {w for t in reference for w in WORD.findall(t.lower())}
    vocab = set(flat)
    lengths = [len(ws) for ws in words]
    return {
        "n": len(texts),
        "mean_words": statistics.mean(lengths) if lengths else 0.0,
        "median_words": statistics.median(lengths) if lengths else 0.0,
        "empty": sum(1 for t in texts if not t.strip()),
        "duplicates": len(texts) - len(set(texts)),
        "distinct_words": len(vocab),
        "type_token_ratio": len(vocab) / len(flat) if flat else 0.0,
        "vocab_in_real": len(vocab & ref_vocab) / len(vocab) if vocab else 0.0,
        "questions": sum(t.strip().endswith("?") for t in texts) / max(len(texts), 1),
    }


def held_out_passages(data: Path, count: int, seed: int) -> tuple[list[str], dict[str, str]]:
    """``count`` SciFact test passages (seeded sample) and one real test query of each."""
    queries = read_queries(data / "queries.jsonl", "test")
    qrels = read_qrels(data / "qrels" / "test.tsv")
    first_query: dict[str, str] = {}
    for qid in sorted(queries, key=int):
        for doc in sorted(qrels.get(qid, {})):
            first_query.setdefault(doc, queries[qid])
    ids = sorted(first_query)
    random.Random(seed).shuffle(ids)
    chosen = ids[:count]
    return chosen, {d: first_query[d] for d in chosen}


def few_shots(data: Path, count: int, seed: int, test_docs: set[str]) -> list[Shot]:
    """``count`` SciFact train pairs (seeded) for the hard prompt."""
    queries = read_queries(data / "queries.jsonl", "train")
    qrels = read_qrels(data / "qrels" / "train.tsv")
    pairs = [
        (d, queries[q])
        for q in sorted(queries)
        for d in sorted(qrels.get(q, {}))
        if d not in test_docs
    ]
    picked = random.Random(seed).sample(pairs, count)
    texts = {doc.id: doc.full_text for doc in read_corpus(data) if doc.id in {d for d, _ in picked}}
    return [Shot(texts[d], q) for d, q in picked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/softsrv-exp"))
    parser.add_argument("--data", type=Path, default=Path(default_data_dir()) / "beir-scifact")
    parser.add_argument(
        "--lm", default=None, help="default: runs/gemma3-270m if converted, else the packaged GGUF"
    )
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--no-hard-prompt", action="store_true")
    parser.add_argument(
        "--index",
        type=Path,
        default=Path("runs/scifact-index"),
        help="dense SciFact index (loupe index build) for the round-trip consistency rates",
    )
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=5e-3)
    parser.add_argument("--generation-batch-size", type=int, default=32)
    parser.add_argument("--prompt-length", type=int, default=8)
    parser.add_argument("--passages", type=int, default=150, help="held-out test passages")
    parser.add_argument("--shots", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-seed", type=int, default=13)
    parser.add_argument("--generation-seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="10 steps, 12 passages")
    parser.add_argument(
        "--context-ablation",
        action="store_true",
        help="dev loss of each trained prompt with each pair's own z and with shuffled z",
    )
    parser.add_argument(
        "--throughput",
        default=None,
        help="also time generation of one batch with this variant's prompt: fast nucleus, "
        "Hugging Face top-p sampling and greedy",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.passages, args.out = 10, 12, args.out.with_name(args.out.name + "-quick")
    lm_name = args.lm or (
        "runs/gemma3-270m" if Path("runs/gemma3-270m").is_dir() else PACKAGED_GEMMA
    )
    args.out.mkdir(parents=True, exist_ok=True)
    lm = load_causal_lm(lm_name, device="cpu")
    sampling = SamplingConfig(max_new_tokens=40, temperature=1.0, top_p=0.95, num_per_prompt=1)

    doc_ids, real = held_out_passages(args.data, args.passages, args.sample_seed)
    ids_file = args.out / "test-passages.txt"
    ids_file.write_text("\n".join(doc_ids) + "\n")

    def generate(name: str, generator: object) -> None:
        config = GenerateConfig(
            corpus=args.data,
            out=args.out / f"generated-{name}.jsonl",
            sampling=sampling,
            batch_size=args.generation_batch_size,
            seed=args.generation_seed,
            doc_ids_file=ids_file,
        )
        stats = generate_pairs(config, generator)  # type: ignore[arg-type]
        if stats.queries:
            (args.out / f"generation-{name}.json").write_text(
                json.dumps(
                    {
                        "queries": stats.queries,
                        "seconds": round(stats.generation_seconds, 1),
                        "queries_per_second": round(stats.queries_per_second, 3),
                    },
                    indent=2,
                )
            )

    for variant in [v for v in args.variants.split(",") if v]:
        if variant not in VARIANTS:
            raise SystemExit(f"unknown variant {variant!r}")
        folder = args.out / f"prompt-{variant}"
        if not (folder / "summary.json").is_file():
            config = SoftSRVTrainConfig(
                out=folder,
                data=[
                    QrelsPairs(
                        queries=args.data / "queries.jsonl",
                        qrels=args.data / "qrels" / "train.tsv",
                        corpus=args.data,
                        split="train",
                    )
                ],
                prompt=variant,
                prompt_length=args.prompt_length,
                lm=lm_name,
                context_cache=args.out / "z-cache.npz",
                batch_size=args.batch_size,
                max_steps=args.steps,
                learning_rate=args.learning_rate,
                warmup_steps=min(10, args.steps // 2),
                eval_every=max(args.steps // 3, 1),
                dev_limit=16 if args.quick else 64,
                patience=None,
                seed=args.seed,
                device="cpu",
            )
            train_softsrv(config, lm=lm)
        generate(f"softsrv-{variant}", SoftSRVGenerator(folder / "best", device="cpu", lm=lm))

    if not args.no_hard_prompt:
        shots = few_shots(args.data, args.shots, args.sample_seed, set(doc_ids))
        (args.out / "shots.jsonl").write_text(
            "".join(json.dumps({"passage": s.passage, "query": s.query}) + "\n" for s in shots)
        )
        generate("hard-prompt", HardPromptGenerator(shots, lm=lm, max_passage_chars=300))

    if args.throughput:
        throughput(args, lm, doc_ids, sampling)
    if args.context_ablation:
        context_ablation(args, lm)
    report(args, real, doc_ids)


def throughput(
    args: argparse.Namespace, lm: CausalLM, doc_ids: list[str], sampling: SamplingConfig
) -> None:
    """Queries/s for one batch of held-out passages under three samplers (same prompt)."""
    generator = SoftSRVGenerator(
        args.out / f"prompt-{args.throughput}" / "best",
        device="cpu",
        lm=lm,
    )
    wanted = set(doc_ids[: args.generation_batch_size])
    passages = [d.full_text for d in read_corpus(args.data) if d.id in wanted]
    rows = {}
    for name, config in (
        ("fast nucleus (top-p 0.95, T 1.0)", sampling),
        ("HF top-p warper (top-p 0.95, T 1.0)", replace(sampling, fast_nucleus=False)),
        ("greedy", replace(sampling, temperature=0.0)),
    ):
        torch.manual_seed(args.generation_seed)
        started = time.perf_counter()
        queries = generator.generate(passages, config)
        seconds = time.perf_counter() - started
        count = sum(len(q) for q in queries)
        rows[name] = {
            "queries": count,
            "seconds": round(seconds, 1),
            "queries_per_second": round(count / seconds, 3),
        }
    (args.out / f"throughput-{args.throughput}.json").write_text(json.dumps(rows, indent=2))
    print(json.dumps(rows, indent=2))


def context_ablation(args: argparse.Namespace, lm: CausalLM) -> None:
    """How much each prompt uses z: its dev loss with every dev pair's own passage vector vs
    with the passage vectors shuffled among the dev pairs (seeded)."""
    rows = {}
    for variant in VARIANTS:
        folder = args.out / f"prompt-{variant}"
        if not (folder / "summary.json").is_file():
            continue
        config = SoftSRVTrainConfig.model_validate_json((folder / "train_config.json").read_text())
        _, dev = split_by_query(load_pairs(config.data), config.dev_fraction, config.seed)
        dev = dev[: config.dev_limit]
        job = SoftSRVTraining(
            config, lm, ContextCache.open(config.context_encoder, config.context_cache, "cpu")
        )
        job.prompt, _ = load_soft_prompt(folder / "best")
        own = job.dev_metrics(dev)["dev_loss"]
        passages = [p.positive for p in dev]
        random.Random(args.seed).shuffle(passages)
        shuffled = [replace(p, positive=q) for p, q in zip(dev, passages, strict=True)]
        rows[variant] = {
            "dev_pairs": len(dev),
            "dev_loss_own_z": round(own, 4),
            "dev_loss_shuffled_z": round(job.dev_metrics(shuffled)["dev_loss"], 4),
        }
    (args.out / "context-ablation.json").write_text(json.dumps(rows, indent=2))
    print(json.dumps(rows, indent=2))


def own_passage_ranks(index: Path, texts: list[str], doc_ids: list[str]) -> dict[str, float]:
    """Round-trip consistency: how often the dense first stage ranks each query's own passage
    in its top 1, 10 and 100 (what ``loupe generate --filter-top-k`` would keep)."""
    ranks = consistency_ranks(index_first_stage(index, device="cpu"), texts, doc_ids, 100)
    return {
        f"own_passage_in_top{k}": sum(r is not None and r <= k for r in ranks) / len(ranks)
        for k in (1, 10, 100)
    }


def report(args: argparse.Namespace, real: dict[str, str], doc_ids: list[str]) -> None:
    """Compare every generated set in the output folder with the real test queries."""
    encoder = TextEncoder(EncoderConfig(device="cpu"))
    index = args.index if args.index and args.index.is_dir() else None
    real_texts = [real[d] for d in doc_ids]
    real_vecs = encoder.encode(real_texts)
    train_queries = list(read_queries(args.data / "queries.jsonl", "train").values())
    rng = random.Random(args.sample_seed)
    train_sample = rng.sample(train_queries, min(len(real_texts), len(train_queries)))
    systems: dict[str, list[str]] = {"real-train-queries (reference)": train_sample}
    samplers: dict[str, str] = {}
    for path in sorted(args.out.glob("generated-*.jsonl")):
        meta = json.loads(path.with_suffix(".meta.json").read_text())
        by_doc = {p.doc_id: p.query for p in read_pairs(path, include_dropped=True)}
        if all(d in by_doc for d in doc_ids):
            name = path.stem.removeprefix("generated-")
            systems[name] = [by_doc[d] for d in doc_ids]
            samplers[name] = "fast nucleus" if meta["sampling"].get("fast_nucleus") else "HF top-p"
    results: dict[str, Any] = {
        "real_test_queries": text_stats(real_texts, real_texts),
        "systems": {},
    }
    if index is not None:
        results["real_test_queries"] |= own_passage_ranks(index, real_texts, doc_ids)
    for name, texts in systems.items():
        vecs = encoder.encode(texts)
        entry: dict[str, Any] = {
            "frechet": frechet_distance(vecs, real_vecs),
            "mauve": mauve_score(vecs, real_vecs, args.sample_seed),
            "mean_cosine_to_own_passage_query": float((vecs * real_vecs).sum(1).mean())
            if name != "real-train-queries (reference)"
            else None,
            **text_stats(texts, real_texts),
        }
        if name in samplers:
            entry["sampler"] = samplers[name]
            if index is not None:
                entry |= own_passage_ranks(index, texts, doc_ids)
        for extra in ("generation", "prompt"):
            file = (
                args.out / f"generation-{name}.json"
                if extra == "generation"
                else args.out / f"prompt-{name.removeprefix('softsrv-')}" / "summary.json"
            )
            if file.is_file():
                entry[extra] = json.loads(file.read_text())
        results["systems"][name] = entry
    samples = []
    for d in doc_ids[:6]:
        samples.append(
            {
                "doc_id": d,
                "real": real[d],
                **{
                    n: t[doc_ids.index(d)]
                    for n, t in systems.items()
                    if n.startswith(("softsrv", "hard"))
                },
            }
        )
    results["samples"] = samples
    results["settings"] = {k: str(v) for k, v in vars(args).items()}
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - started:.0f}s")
