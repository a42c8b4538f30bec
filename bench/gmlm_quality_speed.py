"""Quality against speed of query generation: GMLM parallel decoding at T iterations against
the autoregressive decoder of the same size and data.

Pairs: BEIR SciFact test queries and the documents they judge relevant (no model trained on
them: configs/gmlm-scifact.toml leaves out every document a test query judges). For each
document, the generation is scored with ROUGE-L F1 and ROUGE-1 F1 (rouge-score, stemmed)
against its real test queries (best reference), and corpus BLEU (sacrebleu, first reference).

    python bench/gmlm_quality_speed.py --parallel runs/gmlm-parallel/best \
        --autoregressive runs/gmlm-ar/best [--limit 300] [--out reports/gmlm.json]
    python bench/gmlm_quality_speed.py --quick   # tiny untrained models: checks the script

Latency: per generation at batch 1 (p50, p90 over --latency-n documents, encoder included)
and throughput at batch --batch-size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import sacrebleu
import torch
from rouge_score import rouge_scorer

from index.readers import read_corpus, read_qrels, read_queries
from models.gmlm import GenerativeMaskedLM, GmlmConfig
from models.gmlm_decoding import DecodingConfig, generate
from training.run_config import default_data_dir


@dataclass
class Row:
    method: str
    iterations: int | None
    length_candidates: int
    rouge_l: float
    rouge_1: float
    bleu: float
    mean_tokens: float
    ms_per_generation_p50: float
    ms_per_generation_p90: float
    generations_per_second_batched: float
    mean_iterations_run: float


def scifact_pairs(data_dir: Path, limit: int) -> tuple[list[str], list[list[str]]]:
    """Test documents (title + text) and, for each, its test queries."""
    root = data_dir / "beir-scifact"
    queries = read_queries(root / "queries.jsonl", "test")
    qrels = read_qrels(root / "qrels" / "test.tsv")
    references: dict[str, list[str]] = {}
    for qid in sorted(queries, key=lambda q: int(q) if q.isdigit() else q):
        for doc_id, grade in sorted(qrels.get(qid, {}).items()):
            if grade > 0:
                references.setdefault(doc_id, []).append(queries[qid])
    docs = {d.id: d.full_text for d in read_corpus(root / "corpus.jsonl") if d.id in references}
    ids = [d for d in references if d in docs][:limit]
    return [docs[d] for d in ids], [references[d] for d in ids]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def evaluate(
    name: str,
    model: GenerativeMaskedLM,
    config: DecodingConfig,
    docs: list[str],
    references: list[list[str]],
    batch_size: int,
    latency_n: int,
) -> tuple[Row, list[str]]:
    scorer = rouge_scorer.RougeScorer(["rougeL", "rouge1"], use_stemmer=True)
    outputs: list[str] = []
    iterations: list[int] = []
    tokens: list[int] = []
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(docs), batch_size):
            generations, stats = generate(model, docs[start : start + batch_size], config)
            iterations.append(stats.iterations_run)
            for gens in generations:
                outputs.append(gens[0].text if gens else "")
                tokens.append(len(gens[0].token_ids) if gens else 0)
        batched_seconds = time.perf_counter() - started
        latencies = []
        for doc in docs[:latency_n]:
            t0 = time.perf_counter()
            generate(model, [doc], config)
            latencies.append(1000 * (time.perf_counter() - t0))
    rouge_l = [
        max(scorer.score(ref, out)["rougeL"].fmeasure for ref in refs)
        for out, refs in zip(outputs, references, strict=True)
    ]
    rouge_1 = [
        max(scorer.score(ref, out)["rouge1"].fmeasure for ref in refs)
        for out, refs in zip(outputs, references, strict=True)
    ]
    bleu = sacrebleu.corpus_bleu(outputs, [[refs[0] for refs in references]]).score
    row = Row(
        method=name,
        iterations=config.iterations if model.config.mode == "parallel" else None,
        length_candidates=config.length_candidates if model.config.mode == "parallel" else 1,
        rouge_l=statistics.fmean(rouge_l),
        rouge_1=statistics.fmean(rouge_1),
        bleu=bleu,
        mean_tokens=statistics.fmean(tokens),
        ms_per_generation_p50=percentile(latencies, 0.5),
        ms_per_generation_p90=percentile(latencies, 0.9),
        generations_per_second_batched=len(docs) / batched_seconds,
        mean_iterations_run=statistics.fmean(iterations),
    )
    return row, outputs


def quick_models(folder: Path) -> tuple[GenerativeMaskedLM, GenerativeMaskedLM]:
    """Untrained tiny models on a tiny random BERT: for checking the script only."""
    from tests.conftest import build_tiny_bert

    backbone = str(build_tiny_bert(folder / "bert"))
    torch.manual_seed(0)
    parallel = GenerativeMaskedLM(GmlmConfig(backbone=backbone, max_target_length=12))
    autoregressive = GenerativeMaskedLM(
        GmlmConfig(backbone=backbone, max_target_length=12, mode="autoregressive")
    )
    return parallel.eval(), autoregressive.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parallel", type=Path)
    parser.add_argument("--autoregressive", type=Path)
    parser.add_argument("--data-dir", type=Path, default=Path(default_data_dir()))
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--iterations", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--length-candidates", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--latency-n", type=int, default=50)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--samples", type=int, default=8, help="example generations to keep")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        tmp = Path(tempfile.mkdtemp())
        parallel, autoregressive = quick_models(tmp)
        docs = ["Cats are small domesticated felines.", "The stock market fell on Monday."] * 3
        references = [["what are cats"], ["why did stocks fall"]] * 3
        args.iterations, args.length_candidates, args.latency_n = [1, 2], [1, 2], 2
    else:
        if args.parallel is None or args.autoregressive is None:
            parser.error("--parallel and --autoregressive are required without --quick")
        parallel = GenerativeMaskedLM.load(args.parallel)
        autoregressive = GenerativeMaskedLM.load(args.autoregressive)
        docs, references = scifact_pairs(args.data_dir, args.limit)
    rows: list[Row] = []
    samples: dict[str, list[str]] = {}
    for candidates in args.length_candidates:
        for iterations in args.iterations:
            config = DecodingConfig(iterations=iterations, length_candidates=candidates)
            name = f"gmlm T={iterations} L={candidates}"
            row, outputs = evaluate(
                name, parallel, config, docs, references, args.batch_size, args.latency_n
            )
            rows.append(row)
            samples[name] = outputs[: args.samples]
    row, outputs = evaluate(
        "autoregressive greedy",
        autoregressive,
        DecodingConfig(),
        docs,
        references,
        args.batch_size,
        args.latency_n,
    )
    rows.append(row)
    samples[row.method] = outputs[: args.samples]
    header = (
        f"{'method':<24} {'ROUGE-L':>8} {'ROUGE-1':>8} {'BLEU':>6} {'tokens':>7} "
        f"{'ms p50':>8} {'ms p90':>8} {'gen/s b':>8} {'iters':>6}"
    )
    print(f"{len(docs)} documents; threads {torch.get_num_threads()}")
    print(header)
    for r in rows:
        print(
            f"{r.method:<24} {r.rouge_l:>8.4f} {r.rouge_1:>8.4f} {r.bleu:>6.2f} "
            f"{r.mean_tokens:>7.1f} {r.ms_per_generation_p50:>8.1f} "
            f"{r.ms_per_generation_p90:>8.1f} {r.generations_per_second_batched:>8.1f} "
            f"{r.mean_iterations_run:>6.2f}"
        )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "documents": len(docs),
                    "threads": torch.get_num_threads(),
                    "rows": [asdict(r) for r in rows],
                    "references": [refs[0] for refs in references[: args.samples]],
                    "samples": samples,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
