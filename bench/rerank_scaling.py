"""How re-ranking cost grows with the number of candidates and with document length: scoring
stored token matrices (the token store) against re-encoding the texts (issue 7).

    python -m bench.rerank_scaling [--candidates 10 30 100 300 1000] [--lengths 32 64 128 256 512]
        [--repeats 5] [--out runs/bench/rerank_scaling.json] [--plot reports/rerank_scaling.png]
    python -m bench.rerank_scaling --quick      # tiny random model: checks the script

The shipped re-ranker (MaxSim over a 128-d projection of MiniLM; MaxSim takes any length)
scores synthetic passages of an exact token count (words that are one WordPiece token each),
encoded on PyTorch. The candidate sweep uses ``--fixed-length`` tokens per passage; the
length sweep ``--fixed-candidates`` passages, with the re-ranker's document limit raised to
the length. Each point: one warm-up, then the median (and minimum) of ``--repeats`` calls.
The token-store path includes reading the matrices from a token store on disk and encoding
the query; the re-encoding path encodes every passage.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.harness import (
    machine,
    machine_line,
    markdown_table,
    synthetic_texts,
    timed_ms,
    tiny_late_model,
    write_json,
)
from index.token_store import write_token_store
from models.late_interaction import LateInteractionConfig, LateInteractionModel
from models.late_reranker import LateInteractionReranker

QUERY = "effect of vitamin d on bone density in older adults"


def passages(n: int, tokens: int, seed: int = 0) -> list[str]:
    """``n`` texts of exactly ``tokens`` tokens with [CLS] and [SEP]."""
    return synthetic_texts(n, max(1, tokens - 2), seed=seed)


def median_and_min(call: Callable[[], object], repeats: int) -> tuple[float, float]:
    call()  # warm-up
    times = [timed_ms(call) for _ in range(repeats)]
    return statistics.median(times), min(times)


def measure_point(
    reranker: LateInteractionReranker, texts: Sequence[str], folder: Path, repeats: int
) -> dict[str, float]:
    """Milliseconds to re-rank ``texts`` from a token store and by re-encoding them."""
    model = reranker.model
    store = write_token_store(folder, range(len(texts)), model.document_matrices(texts), model.dim)
    keys = list(range(len(texts)))

    def from_store() -> None:
        matrices = [m for m in store.get(keys) if m is not None]
        reranker.score_stored(QUERY, matrices)

    stored_ms, stored_min = median_and_min(from_store, repeats)
    encode_ms, encode_min = median_and_min(lambda: reranker.score(QUERY, texts), repeats)
    return {
        "token_store_ms": stored_ms,
        "token_store_min_ms": stored_min,
        "re_encode_ms": encode_ms,
        "re_encode_min_ms": encode_min,
        "ratio": encode_ms / stored_ms,
    }


def single_pass(config: LateInteractionConfig, length: int) -> LateInteractionConfig:
    """``config`` reading documents in one pass of up to ``length`` tokens (one window)."""
    return replace(config, d_len=length, doc_windows=1, window_overlap=None)


def sweep(
    reranker: LateInteractionReranker,
    candidates: Sequence[int],
    lengths: Sequence[int],
    fixed_length: int,
    fixed_candidates: int,
    repeats: int,
    work: Path,
) -> dict[str, list[dict[str, float]]]:
    model = reranker.model
    base = model.config
    by_candidates = []
    for n in candidates:
        model.config = single_pass(base, fixed_length)
        point = measure_point(reranker, passages(n, fixed_length), work / f"c{n}", repeats)
        by_candidates.append({"candidates": n, "tokens": fixed_length, **point})
    by_length = []
    for length in lengths:
        if base.scorer.kind != "maxsim" and length != base.d_len:
            continue  # LITE's scorer has a fixed matrix size
        model.config = single_pass(base, length)
        texts = passages(fixed_candidates, length)
        point = measure_point(reranker, texts, work / f"l{length}", repeats)
        by_length.append({"candidates": fixed_candidates, "tokens": length, **point})
    model.config = base
    return {"by_candidates": by_candidates, "by_length": by_length}


def plot(payload: dict[str, Any], path: Path) -> Path:
    """Latency against candidates (log-log) and against passage length, both paths."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, x in ((axes[0], "by_candidates", "candidates"), (axes[1], "by_length", "tokens")):
        rows = payload[key]
        xs = [r[x] for r in rows]
        ax.plot(xs, [r["re_encode_ms"] for r in rows], "o-", label="re-encoding texts (PyTorch)")
        ax.plot(xs, [r["token_store_ms"] for r in rows], "s-", label="token store")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(xs, [str(v) for v in xs])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_ylabel("ms per query (median)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_xlabel(f"candidates ({payload['fixed_length']} tokens each)")
    axes[1].set_xlabel(f"tokens per passage ({payload['fixed_candidates']} candidates)")
    axes[0].legend()
    title = "Re-ranking cost" + (" (quick: tiny random model)" if payload["quick"] else "")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def report_markdown(payload: dict[str, Any]) -> str:
    headers = ["candidates", "tokens", "token store ms", "re-encode ms", "re-encode / store"]
    rows = [
        [r["candidates"], r["tokens"], r["token_store_ms"], r["re_encode_ms"], r["ratio"]]
        for r in payload["by_candidates"] + payload["by_length"]
    ]
    lines = [
        f"{payload['model']}; median of {payload['repeats']} calls; "
        f"{machine_line(payload['machine'])}.",
        "",
        markdown_table(headers, rows),
    ]
    if payload.get("plot"):
        lines += ["", f"![latency against candidates]({Path(payload['plot']).name})"]
    if payload.get("quick"):
        lines.insert(0, "**Quick mode: tiny random model; not a result.**\n")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--candidates", type=int, nargs="+", default=[10, 30, 100, 300, 1000])
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    parser.add_argument("--fixed-length", type=int, default=128)
    parser.add_argument("--fixed-candidates", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reranker", default="default", help="late-interaction folder")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--plot", type=Path, help="PNG (default: beside --out)")
    args = parser.parse_args(argv)
    from models.registry import resolve_late_interaction

    with tempfile.TemporaryDirectory(prefix="loupe-scaling-") as tmp:
        work = Path(tmp)
        if args.quick:
            folder = tiny_late_model(work / "model")
            candidates, lengths, repeats = [10, 30, 100], [32, 64, 128], 2
            fixed_length, fixed_candidates = 64, 30
        else:
            folder = resolve_late_interaction(args.reranker)
            candidates, lengths, repeats = args.candidates, args.lengths, args.repeats
            fixed_length, fixed_candidates = args.fixed_length, args.fixed_candidates
        reranker = LateInteractionReranker(LateInteractionModel.load(folder, device="cpu"))
        results = sweep(
            reranker, candidates, lengths, fixed_length, fixed_candidates, repeats, work
        )
    plot_path = args.plot or (args.out.with_suffix(".png") if args.out else None)
    payload: dict[str, Any] = {
        "benchmark": "rerank_scaling",
        "quick": args.quick,
        "model": "tiny random MaxSim" if args.quick else f"re-ranker {args.reranker}",
        "repeats": repeats,
        "fixed_length": fixed_length,
        "fixed_candidates": fixed_candidates,
        "machine": machine(),
        **results,
        "plot": str(plot_path) if plot_path else None,
    }
    if plot_path is not None:
        plot(payload, plot_path)
    print(report_markdown(payload))
    write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
