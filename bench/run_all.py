"""Run every issue-7 benchmark and rebuild the tables of reports/performance.md from their JSON.

    bench/run_all.sh                      # full mode (a quiet machine: about an hour, plus
                                          # the 100k-passage index build the first time)
    python -m bench.run_all --report-only # rebuild the report from runs/bench/*.json
    python -m bench.run_all --quick       # every quick mode; writes runs/bench-quick/ and a
                                          # copy of the report there, never the real one

Each benchmark owns one block of the report between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->``; a block whose JSON is missing keeps (or gets) the line
:data:`PENDING`. Text outside the blocks (the sections measured by hand) is left as it is.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from bench.harness import markdown_table

PENDING = "_Not yet run on a quiet machine: `bench/run_all.sh` fills this block._"
REPORT = Path("reports/performance.md")
ONNX_EXPORT = Path("runs/onnx-default")


@dataclass(frozen=True)
class Bench:
    """A benchmark module, its full-mode arguments, and whether it has a quick mode here."""

    name: str
    module: str
    full_args: tuple[str, ...] = ()
    quick: bool = True
    extra: tuple[str, ...] = field(default=())
    """Arguments needing the report's folder (``{report_dir}``)."""


BENCHES = (
    Bench(
        "rerank_alternatives",
        "bench.rerank_alternatives",
        extra=("--plot", "{report_dir}/quality_latency.png"),
    ),
    Bench(
        "rerank_scaling",
        "bench.rerank_scaling",
        extra=("--plot", "{report_dir}/rerank_scaling.png"),
    ),
    Bench("flops", "bench.flops"),
    Bench("service_memory", "bench.service_memory", ("--index", "runs/bench/memory-index")),
    Bench("first_stage", "bench.first_stage", ("--sizes", "100000", "1000000")),
    Bench("rerank_runtimes", "bench.rerank_runtimes", ("--onnx", str(ONNX_EXPORT)), quick=False),
    Bench("search_profile", "bench.search_profile", ("--index", "runs/scifact-index-lite")),
    Bench("infinity_compare", "bench.infinity_compare", quick=False),
    Bench("pylate_rerank", "bench.pylate_rerank", quick=False),
)


def _first_stage(payload: dict[str, Any]) -> str:
    rows = [
        [f"{r['vectors']:,}", r["factory"], r["build_s"], r["index_mb"], r["qps"], r["recall@10"]]
        for r in payload["rows"]
    ]
    return markdown_table(
        ["vectors", "index", "build s", "size MB", "queries/s", "recall@10"], rows
    ) + (
        f"\n\n{payload['dim']}-d synthetic vectors, {payload['queries']} queries, "
        f"nprobe {payload['nprobe']}, efSearch {payload['efSearch']}, seed {payload['seed']}."
    )


def _rerank_runtimes(payload: dict[str, Any]) -> str:
    rows = [
        [name, r["p50_ms"], r["max_ms"], r["top10_same_position"]]
        for name, r in payload["results"].items()
    ]
    table = markdown_table(
        ["runtime", "p50 ms / 100 candidates", "max ms", "top-10 positions equal to PyTorch"],
        rows,
    )
    return f"{table}\n\n{len(payload['queries'])} DL19 queries, {payload['threads']} threads."


def renderer(name: str) -> Callable[[dict[str, Any]], str]:
    if name == "first_stage":
        return _first_stage
    if name == "rerank_runtimes":
        return _rerank_runtimes
    module = __import__(f"bench.{name}", fromlist=["report_markdown"])
    return module.report_markdown


def block_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- bench:{name} -->\n)(.*?)(\n<!-- /bench:{name} -->)", re.DOTALL)


def _fill(match: re.Match[str], body: str) -> str:
    """A report block with its body replaced (begin and end markers kept)."""
    return match.group(1) + body + match.group(3)


def regenerate(report: Path, json_dir: Path) -> list[str]:
    """Fill each benchmark's block of ``report`` from ``json_dir/NAME.json``; returns the
    names filled. A block missing from the report is an error (the report lost a marker)."""
    text = report.read_text()
    filled = []
    for bench in BENCHES:
        pattern = block_pattern(bench.name)
        if not pattern.search(text):
            raise ValueError(f"{report} has no block <!-- bench:{bench.name} -->")
        path = json_dir / f"{bench.name}.json"
        body = PENDING
        if path.is_file():
            body = renderer(bench.name)(json.loads(path.read_text()))
            filled.append(bench.name)
        text = pattern.sub(partial(_fill, body=body), text)
    report.write_text(text)
    return filled


def run(bench: Bench, out: Path, quick: bool, report_dir: Path) -> bool:
    args = ["--quick"] if quick else list(bench.full_args)
    args += [a.format(report_dir=report_dir) for a in bench.extra]
    command = [sys.executable, "-m", bench.module, *args, "--out", str(out)]
    print("$", " ".join(command), flush=True)
    return subprocess.run(command, check=False).returncode == 0


def export_onnx() -> bool:
    if (ONNX_EXPORT / "late_tokens.int8.onnx").is_file():
        return True
    from models.registry import resolve_late_interaction

    command = [sys.executable, "-m", "loupe.cli", "export", "onnx"]
    command += [str(resolve_late_interaction("default")), "--out", str(ONNX_EXPORT), "--int8"]
    print("$", " ".join(command), flush=True)
    return subprocess.run(command, check=False).returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--json-dir", type=Path)
    parser.add_argument("--report", type=Path)
    parser.add_argument("--only", nargs="+", help="run only these benchmarks")
    args = parser.parse_args(argv)
    json_dir = args.json_dir or Path("runs/bench-quick" if args.quick else "runs/bench")
    report = args.report or (json_dir / "performance.md" if args.quick else REPORT)
    json_dir.mkdir(parents=True, exist_ok=True)
    if report != REPORT and not report.exists():
        shutil.copy(REPORT, report)
    failed = []
    if not args.report_only:
        for bench in BENCHES:
            if (args.only and bench.name not in args.only) or (args.quick and not bench.quick):
                continue
            if bench.name == "rerank_runtimes" and not export_onnx():
                failed.append(bench.name)
                continue
            if not run(bench, json_dir / f"{bench.name}.json", args.quick, report.parent):
                failed.append(bench.name)
    filled = regenerate(report, json_dir)
    print(f"rebuilt {report}: {', '.join(filled) or 'nothing'} filled; failed: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
