"""``loupe generate``: synthetic training queries for unlabeled passages.

The command only parses options, builds a generator and calls
:func:`training.synthetic_generate.generate_pairs`. A generator is picked by one option:
``--softsrv FOLDER`` (a trained soft prompt and its frozen LM), ``--hard-prompt SHOTS`` (the
few-shot baseline) or ``--gmlm FOLDER`` (the parallel decoder of ``loupe train gmlm``).
Every option also reads ``LOUPE_<OPTION>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from loupe.cli_common import Device, Quiet, env, user_errors
from models.causal_lm import PACKAGED_GEMMA


def build_generator(
    *,
    softsrv: Path | None,
    hard_prompt: Path | None,
    lm: str | None,
    device: str | None,
    max_passage_chars: int = 300,
    gmlm: Path | None = None,
    iterations: int = 4,
) -> Any:
    """The one generator the options name."""
    from training.synthetic_generators import HardPromptGenerator, SoftSRVGenerator, read_shots

    if sum(option is not None for option in (softsrv, hard_prompt, gmlm)) != 1:
        raise ValueError(
            "pass exactly one of --softsrv FOLDER, --hard-prompt SHOTS and --gmlm FOLDER"
        )
    if gmlm is not None:
        from training.gmlm_generator import GmlmQueryGenerator

        return GmlmQueryGenerator(gmlm, iterations=iterations, device=device)
    if softsrv is not None:
        from models.causal_lm import load_causal_lm
        from models.device import pick_device
        from models.softsrv import read_spec

        spec = read_spec(softsrv)
        loaded = load_causal_lm(lm, device=pick_device(device), dtype=spec.lm_dtype) if lm else None
        return SoftSRVGenerator(softsrv, device=device, lm=loaded)
    assert hard_prompt is not None
    return HardPromptGenerator(
        read_shots(hard_prompt),
        lm=lm or PACKAGED_GEMMA,
        device=device,
        max_passage_chars=max_passage_chars,
    )


def generate(
    corpus: Annotated[
        Path,
        typer.Option(
            help="corpus file (tsv, jsonl, csv, parquet) or BEIR folder", envvar=env("corpus")
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(help="pair file (JSONL) to append to; qrels beside it", envvar=env("out")),
    ],
    softsrv: Annotated[
        Path | None,
        typer.Option(
            help="trained SoftSRV prompt folder (loupe train softsrv)", envvar=env("softsrv")
        ),
    ] = None,
    hard_prompt: Annotated[
        Path | None,
        typer.Option(
            help="few-shot baseline: JSONL of {passage, query} shots", envvar=env("hard_prompt")
        ),
    ] = None,
    max_passage_chars: Annotated[
        int,
        typer.Option(
            min=20,
            help="--hard-prompt: passages and shots are cut to this many characters",
            envvar=env("max_passage_chars"),
        ),
    ] = 300,
    gmlm: Annotated[
        Path | None,
        typer.Option(help="GMLM parallel decoder folder (loupe train gmlm)", envvar=env("gmlm")),
    ] = None,
    iterations: Annotated[
        int, typer.Option(min=1, help="GMLM decoding passes", envvar=env("iterations"))
    ] = 4,
    lm: Annotated[
        str | None,
        typer.Option(
            help=f"causal LM (folder, HF name, .gguf, {PACKAGED_GEMMA}); "
            "default: the prompt's own, or the packaged Gemma",
            envvar=env("lm"),
        ),
    ] = None,
    num_queries: Annotated[
        int, typer.Option(min=1, help="queries sampled per passage", envvar=env("num_queries"))
    ] = 1,
    temperature: Annotated[
        float, typer.Option(min=0.0, help="0 for greedy", envvar=env("temperature"))
    ] = 1.0,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0, envvar=env("top_p"))] = 0.95,
    max_new_tokens: Annotated[int, typer.Option(min=1, envvar=env("max_new_tokens"))] = 32,
    fast_nucleus: Annotated[
        bool,
        typer.Option(
            help="top-p without sorting the vocabulary each step (same distribution); "
            "--no-fast-nucleus uses Hugging Face's warpers",
            envvar=env("fast_nucleus"),
        ),
    ] = True,
    batch_size: Annotated[
        int, typer.Option(min=1, help="passages per LM call", envvar=env("batch_size"))
    ] = 8,
    seed: Annotated[int, typer.Option(envvar=env("seed"))] = 0,
    doc_ids: Annotated[
        Path | None,
        typer.Option(help="only these passage ids (one per line)", envvar=env("doc_ids")),
    ] = None,
    exclude_qrels: Annotated[
        list[Path] | None,
        typer.Option(help="skip passages judged here; repeatable", envvar=env("exclude_qrels")),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="at most this many passages", envvar=env("limit"))
    ] = None,
    filter_top_k: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="consistency filter: keep a query when its passage is in the first stage's top k",
            envvar=env("filter_top_k"),
        ),
    ] = None,
    filter_index: Annotated[
        Path | None,
        typer.Option(
            help="first stage of the filter: this index folder (default: built over --corpus)",
            envvar=env("filter_index"),
        ),
    ] = None,
    filter_first_stage: Annotated[
        str,
        typer.Option(
            help="the filter's first stage: dense (the dual encoder; over --corpus it encodes "
            "the corpus first) or bm25 (over --corpus, built in seconds; an index needs --bm25)",
            envvar=env("filter_first_stage"),
        ),
    ] = "dense",
    device: Device = None,
    quiet: Quiet = False,
) -> None:
    """Write synthetic (query, passage) training pairs for corpus passages; resumable: a rerun
    with the same --out skips the passages already done."""
    from models.prompted_lm import SamplingConfig
    from training.consistency import (
        bm25_corpus_first_stage,
        corpus_first_stage,
        index_first_stage,
    )
    from training.synthetic_generate import GenerateConfig, generate_pairs
    from training.synthetic_pairs import qrels_path

    if filter_first_stage not in ("dense", "bm25"):
        raise typer.BadParameter(
            f"unknown first stage {filter_first_stage!r}: dense or bm25",
            param_hint="--filter-first-stage",
        )
    config = GenerateConfig(
        corpus=corpus,
        out=out,
        sampling=SamplingConfig(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            num_per_prompt=num_queries,
            fast_nucleus=fast_nucleus,
        ),
        batch_size=batch_size,
        seed=seed,
        doc_ids_file=doc_ids,
        exclude_qrels=tuple(exclude_qrels or ()),
        limit=limit,
        filter_top_k=filter_top_k,
        show_progress=not quiet,
    )
    generator = build_generator(
        softsrv=softsrv,
        hard_prompt=hard_prompt,
        lm=lm,
        device=device,
        max_passage_chars=max_passage_chars,
        gmlm=gmlm,
        iterations=iterations,
    )
    first_stage = None
    if filter_top_k is not None:
        if filter_index is not None:
            first_stage = index_first_stage(filter_index, kind=filter_first_stage, device=device)
        elif filter_first_stage == "bm25":
            first_stage = bm25_corpus_first_stage(corpus)
        else:
            first_stage = corpus_first_stage(corpus, device=device, show_progress=not quiet)
    stats = generate_pairs(config, generator, first_stage)
    typer.echo(
        f"{stats.queries} queries for {stats.passages} passages ({stats.skipped} already done), "
        f"{stats.kept} kept; {stats.queries_per_second:.2f} queries/s; "
        f"pairs in {out}, qrels in {qrels_path(out)}"
    )


def register(app: typer.Typer) -> None:
    """Add ``generate`` to the ``loupe`` command line."""
    app.command("generate")(user_errors(generate))
