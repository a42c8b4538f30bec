"""The ``loupe`` command line. It parses options and calls the jobs; it holds no logic.

Every option also reads from an environment variable ``LOUPE_<OPTION>``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from index.token_quantization import TokenDtype
from loupe.calibrate_command import register as register_calibrate
from loupe.cli_common import (
    BatchSize,
    ConfigAssignments,
    ConfigFile,
    Device,
    EfSearch,
    FilterPairs,
    LearningRate,
    MaxSteps,
    Nprobe,
    OutFolder,
    QdrantApiKey,
    QdrantUrl,
    QueriesFile,
    QuerySplit,
    Quiet,
    Runtime,
    RuntimeOption,
    Seed,
    TriplesFiles,
    env,
    load_job_config,
    schedule_overrides,
    triples_sources,
    user_errors,
)
from loupe.generate_command import register as register_generate
from loupe.gmlm_commands import register as register_gmlm
from loupe.serve_command import register as register_serve
from loupe.settings import CommonSettings
from loupe.softsrv_commands import register as register_softsrv

app = typer.Typer(
    name="loupe",
    help="Loupe: dual-encoder retrieval, FAISS index, learned late-interaction re-ranking.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # paragraphs reflowed (rich mode keeps a docstring's line breaks) and `[extra]` kept
    rich_markup_mode="markdown",
)
index_app = typer.Typer(help="Build and inspect indexes.", no_args_is_help=True)
app.add_typer(index_app, name="index")
train_app = typer.Typer(
    help="Offline training jobs. Under torchrun (torchrun --nproc-per-node N -m loupe train ...) "
    "they train data-parallel: N ranks with accumulation A take the steps of one process "
    "with accumulation N x A.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")


@train_app.callback()
def train_setup() -> None:
    """Join torchrun's process group, if any, before a job builds its model."""
    from training.distributed import init_from_environment

    init_from_environment()


export_app = typer.Typer(help="Export models for other runtimes.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@index_app.command("build")
@user_errors
def index_build(
    corpus: Annotated[
        Path,
        typer.Option(
            help="corpus file (tsv, jsonl, csv, parquet) or BEIR folder", envvar=env("corpus")
        ),
    ],
    out: Annotated[Path, typer.Option(help="index folder to write", envvar=env("out"))],
    model: Annotated[
        str, typer.Option(help="encoder: 'default', folder or HF name", envvar=env("model"))
    ] = "default",
    factory: Annotated[
        str,
        typer.Option(help="FAISS factory: Flat, HNSW32, IVF1024,PQ32 ...", envvar=env("factory")),
    ] = "Flat",
    batch_size: Annotated[int, typer.Option(min=1, envvar=env("batch_size"))] = 32,
    max_length: Annotated[
        int | None, typer.Option(min=8, help="tokens per passage", envvar=env("max_length"))
    ] = None,
    token_store: Annotated[
        bool,
        typer.Option(help="also store token matrices for the re-ranker", envvar=env("token_store")),
    ] = False,
    reranker: Annotated[
        str,
        typer.Option(
            help="late-interaction model for --token-store: 'default', 'maxsim[:MODEL]' or a "
            "folder",
            envvar=env("reranker"),
        ),
    ] = "default",
    token_dtype: Annotated[
        TokenDtype,
        typer.Option(
            help="token store values: per-token int8 (half of float16), int4 or float16",
            envvar=env("token_dtype"),
        ),
    ] = TokenDtype.int8,
    bm25: Annotated[
        bool, typer.Option(help="also build a BM25 index (second first stage)", envvar=env("bm25"))
    ] = False,
    expand: Annotated[
        int,
        typer.Option(
            min=0,
            help="doc2query: append N generated queries to each document",
            envvar=env("expand"),
        ),
    ] = 0,
    generator: Annotated[
        Path | None,
        typer.Option(help="GMLM folder for --expand (loupe train gmlm)", envvar=env("generator")),
    ] = None,
    expand_iterations: Annotated[
        int,
        typer.Option(
            min=1, help="parallel decoding passes for --expand", envvar=env("expand_iterations")
        ),
    ] = 4,
    resume: Annotated[
        bool,
        typer.Option(
            help="go on with an interrupted build of the same corpus and models in --out "
            "(progress is checkpointed every 8,192 documents)",
            envvar=env("resume"),
        ),
    ] = False,
    reuse: Annotated[
        bool,
        typer.Option(
            help="take unchanged documents' encodings (and --expand queries) from the index "
            "in --out this build replaces, when it was encoded (expanded) the same way, "
            "instead of computing them again",
            envvar=env("reuse"),
        ),
    ] = True,
    qdrant_url: Annotated[
        str | None,
        typer.Option(
            help="put the vectors in a Qdrant collection at this URL (or local folder: "
            "qdrant-client's embedded mode) instead of a FAISS file; needs loupe[qdrant]",
            envvar=env("qdrant_url"),
        ),
    ] = None,
    qdrant_api_key: QdrantApiKey = None,
    device: Device = None,
    runtime: Runtime = RuntimeOption.auto,
    quiet: Quiet = False,
) -> None:
    """Encode a corpus with the dual encoder and write a FAISS index (or a Qdrant collection),
    docstore and manifest."""
    from index.builder import IndexBuildConfig, build_index
    from index.qdrant_index import QdrantTarget
    from models.doc2query import ExpansionConfig
    from models.runtime import RuntimeConfig

    if expand and generator is None:
        raise ValueError("--expand needs --generator (a GMLM folder from `loupe train gmlm`)")
    expansion = (
        ExpansionConfig(
            str(generator),
            queries_per_document=expand,
            iterations=expand_iterations,
            device=device,
        )
        if expand and generator is not None
        else None
    )

    stats = build_index(
        IndexBuildConfig(
            corpus=corpus,
            out=out,
            model=model,
            factory=factory,
            batch_size=batch_size,
            max_length=max_length,
            device=device,
            show_progress=not quiet,
            token_store=token_store,
            reranker=reranker,
            token_dtype=token_dtype,
            bm25=bm25,
            expansion=expansion,
            runtime=RuntimeConfig(runtime.value),
            resume=resume,
            reuse=reuse,
            qdrant=QdrantTarget(qdrant_url, qdrant_api_key) if qdrant_url else None,
        )
    )
    m = stats.manifest
    resumed = f", resumed after {stats.resumed_after}" if stats.resumed_after else ""
    resumed += f", {stats.reused} unchanged, not encoded again" if stats.reused else ""
    if stats.expansions_reused:
        resumed += f", {stats.expansions_reused} kept their generated queries"
    typer.echo(
        f"indexed {m.count} documents ({m.dimension}-d, {m.factory}) into {out} "
        f"in {stats.seconds:.1f}s ({stats.passages_per_second:.1f} passages/s{resumed})"
    )


@index_app.command("export")
@user_errors
def index_export(
    index: Annotated[Path, typer.Option(help="index folder to read", envvar=env("index"))],
    out: Annotated[Path, typer.Option(help="corpus JSONL file to write", envvar=env("out"))],
    metadata_filter: FilterPairs = None,
) -> None:
    """Write the index's documents (those added over HTTP too) as corpus JSONL, which
    `loupe index build --corpus` reads: to rebuild for another encoder or re-ranker, or to
    back the documents up as text."""
    from index.export import export_corpus
    from index.metadata_filter import parse_filter_pairs

    where = parse_filter_pairs(metadata_filter) if metadata_filter else None
    count = export_corpus(index, out, where)
    typer.echo(f"wrote {count} documents to {out}")


@index_app.command("reindex")
@user_errors
def index_reindex(
    index: Annotated[Path, typer.Option(help="index folder", envvar=env("index"))],
    factory: Annotated[
        str | None,
        typer.Option(
            help="FAISS factory of the new vector index (Flat, HNSW32, IVF4096,PQ32...); "
            "default: the index's own",
            envvar=env("factory"),
        ),
    ] = None,
    qdrant_url: QdrantUrl = None,
    qdrant_api_key: QdrantApiKey = None,
    quiet: Quiet = False,
) -> None:
    """Rebuild the index's vector index from the vectors its docstore holds, encoding
    nothing: after a lost or corrupt vectors file, to change the FAISS factory, to drop the
    deletes HNSW only hides, or to move the vectors into Qdrant (--qdrant-url) or back into
    a FAISS file (--factory). Stop a service writing to the folder first; read-only replicas
    pick the new generation up."""
    from index.qdrant_index import target_for
    from index.reindex import reindex

    done = reindex(
        index,
        factory=factory,
        qdrant=target_for(index, qdrant_url, qdrant_api_key),
        show_progress=not quiet,
    )
    before, after = done.previous, done.manifest
    where = (
        f"Qdrant collection {after.qdrant_collection}" if after.qdrant_collection else after.factory
    )
    typer.echo(
        f"re-indexed {after.count} documents of {index} in {done.seconds:.1f}s: "
        f"{before.factory} ({before.vectors_backend}) -> {where}"
    )


@index_app.command("remove")
@user_errors
def index_remove(
    index: Annotated[Path, typer.Option(help="index folder to delete", envvar=env("index"))],
    yes: Annotated[bool, typer.Option("--yes", help="delete without asking")] = False,
    qdrant_url: QdrantUrl = None,
    qdrant_api_key: QdrantApiKey = None,
) -> None:
    """Delete an index version for good: its folder and, if its vectors are in Qdrant, its
    collection there (deleting the folder alone would leave the collection). Refuses a
    folder that holds no index."""
    from index.qdrant_index import target_for
    from index.remove import remove_index

    if not yes:
        typer.confirm(f"delete the index in {index} and everything it holds?", abort=True)
    removed = remove_index(index, target_for(index, qdrant_url, qdrant_api_key))
    also = f" and Qdrant collection {removed.collection}" if removed.collection else ""
    if removed.interrupted:
        also += f" (and those of interrupted builds: {', '.join(removed.interrupted)})"
    typer.echo(f"deleted {removed.folder}{also}")


@index_app.command("info")
@user_errors
def index_info(
    index: Annotated[Path, typer.Option(help="index folder to describe", envvar=env("index"))],
    verify: Annotated[
        bool,
        typer.Option(help="also check the FAISS file's checksum, or count Qdrant's points"),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    qdrant_url: QdrantUrl = None,
    qdrant_api_key: QdrantApiKey = None,
) -> None:
    """Describe an index folder: its generation, encoder, documents, vector backend, token
    store and sizes (read from its files; the vectors are not loaded). --verify checks the
    FAISS file's checksum, or counts the Qdrant collection's points."""
    import json

    from index.inspect import index_info as describe
    from index.qdrant_index import target_for

    qdrant = target_for(index, qdrant_url, qdrant_api_key)
    info = describe(index, verify=verify, qdrant=qdrant)
    typer.echo(json.dumps(info.as_dict(), indent=2) if as_json else "\n".join(info.lines()))
    if info.checksum_ok is False:
        raise typer.Exit(1)


@app.command("search")
@user_errors
def search(
    query: Annotated[str, typer.Argument(help="the query text")],
    index: Annotated[Path | None, typer.Option(help="index folder", envvar=env("index"))] = None,
    k: Annotated[
        int, typer.Option("-k", "--top-k", min=1, help="hits to show", envvar=env("top_k"))
    ] = 10,
    url: Annotated[
        str | None, typer.Option(help="search a running `loupe serve` instead", envvar=env("url"))
    ] = None,
    first_stage: Annotated[
        str,
        typer.Option(
            help="dense; lexical (the docstore's full-text index, BM25); hybrid (both, fused "
            "by reciprocal rank); or bm25 (the bm25s index of --bm25 builds)",
            envvar=env("first_stage"),
        ),
    ] = "dense",
    metadata_filter: FilterPairs = None,
    reranker: Annotated[
        str | None,
        typer.Option(
            help="re-rank the first --depth hits with this re-ranker, as `loupe eval` takes it "
            "('default', 'maxsim', a folder or HF name); default: the first stage alone",
            envvar=env("reranker"),
        ),
    ] = None,
    depth: Annotated[
        int,
        typer.Option(min=1, help="first-stage hits re-ranked by --reranker", envvar=env("depth")),
    ] = 100,
    qdrant_url: QdrantUrl = None,
    qdrant_api_key: QdrantApiKey = None,
    nprobe: Nprobe = None,
    ef_search: EfSearch = None,
    device: Device = None,
) -> None:
    """Search an index with the dual encoder, optionally re-ranked (or a service with --url,
    which re-ranks), and print ranked hits."""
    from index.metadata_filter import parse_filter_pairs

    where = parse_filter_pairs(metadata_filter) if metadata_filter else None
    if url:
        from loupe.serve_command import search_remote

        for line in search_remote(url, query, k, where=where, first_stage=first_stage):
            typer.echo(line)
        return
    if index is None:
        raise ValueError("pass --index (or --url to search a running service)")
    from index.qdrant_index import target_for
    from index.vector_index import ApproximateSearch
    from loupe.search_command import search_local

    qdrant = target_for(index, qdrant_url, qdrant_api_key)
    approximate = ApproximateSearch(nprobe=nprobe, ef_search=ef_search)
    for line in search_local(
        index,
        query,
        k,
        first_stage,
        where,
        reranker,
        depth,
        device,
        qdrant=qdrant,
        approximate=approximate,
    ):
        typer.echo(line)


@app.command("eval")
@user_errors
def evaluate(
    queries: QueriesFile,
    out: Annotated[
        Path, typer.Option(help="folder for run.trec, metrics.json, report.md", envvar=env("out"))
    ],
    run: Annotated[
        Path | None, typer.Option(help="score this TREC run as it is", envvar=env("run"))
    ] = None,
    candidates: Annotated[
        Path | None,
        typer.Option(
            help="TREC run to re-rank: its passages' texts from --corpus (encoded), or from "
            "--index (scored from its token store where it holds their matrices)",
            envvar=env("candidates"),
        ),
    ] = None,
    corpus: Annotated[
        Path | None, typer.Option(help="corpus holding the candidates' texts", envvar=env("corpus"))
    ] = None,
    index: Annotated[
        Path | None,
        typer.Option(
            help="retrieve from this index folder (or, with --candidates, read their texts "
            "and stored token matrices there)",
            envvar=env("index"),
        ),
    ] = None,
    reranker: Annotated[
        str | None,
        typer.Option(
            help="re-ranker: 'default', 'maxsim[:MODEL]' (untrained MaxSim), 'cosine[:MODEL]', "
            "a re-ranker folder, a cross-encoder (sequence-classification folder or HF name), "
            "or an encoder folder or HF name (its cosine)",
            envvar=env("reranker"),
        ),
    ] = None,
    depth: Annotated[
        int, typer.Option(min=1, help="first-stage depth with --index", envvar=env("depth"))
    ] = 100,
    rerank_depth: Annotated[
        int, typer.Option(min=1, help="candidates re-ranked per query", envvar=env("rerank_depth"))
    ] = 100,
    split: QuerySplit = None,
    measure: Annotated[
        list[str] | None,
        typer.Option(help="ir_measures name; repeat for several", envvar=env("measure")),
    ] = None,
    compare: Annotated[
        Path | None, typer.Option(help="baseline TREC run to compare with", envvar=env("compare"))
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="system name in reports", envvar=env("name"))
    ] = None,
    first_stage: Annotated[
        str,
        typer.Option(
            help="dense; lexical (the docstore's full-text index, BM25); hybrid (both, fused "
            "by reciprocal rank); or bm25 (the bm25s index of --bm25 builds)",
            envvar=env("first_stage"),
        ),
    ] = "dense",
    qrels: Annotated[
        Path | None,
        typer.Option(
            help="judgments (TREC or BEIR tsv); without them the run is written, unscored",
            envvar=env("qrels"),
        ),
    ] = None,
    nprobe: Nprobe = None,
    ef_search: EfSearch = None,
    qdrant_url: QdrantUrl = None,
    qdrant_api_key: QdrantApiKey = None,
    device: Device = None,
    runtime: Runtime = RuntimeOption.auto,
    quiet: Quiet = False,
) -> None:
    """Score a run, re-rank candidates, or retrieve from an index; write run, metrics, report
    (without --qrels: the run alone, e.g. for queries whose judgments are held elsewhere)."""
    from evaluation.jobs import EvalConfig, run_eval, summary_table
    from index.qdrant_index import target_for
    from index.vector_index import ApproximateSearch
    from models.registry import load_reranker

    config = EvalConfig(
        queries=queries,
        qrels=qrels,
        out=out,
        run=run,
        candidates=candidates,
        corpus=corpus,
        index=index,
        reranker=reranker,
        depth=depth,
        rerank_depth=rerank_depth,
        query_split=split,
        measures=tuple(measure) if measure else None,
        first_stage=first_stage,
        compare=compare,
        name=name,
        device=device,
        runtime=runtime.value,
        show_progress=not quiet,
        qdrant=target_for(index, qdrant_url, qdrant_api_key),
        approximate=ApproximateSearch(nprobe=nprobe, ef_search=ef_search),
    )
    config.validate()
    needs_reranker = candidates is not None or reranker is not None
    loaded = load_reranker(reranker or "default", device=device) if needs_reranker else None
    result = run_eval(config, loaded)
    typer.echo(summary_table(result))
    for key, value in result.timings.items():
        typer.echo(f"{key}: {value:.2f}")
    for choice in result.runtimes:
        typer.echo(f"runtime {choice.summary()}")
    if result.calibration is not None:
        q = result.calibration
        typer.echo(
            f"relevance_score calibration: mean P {q.mean_probability:.3f} vs "
            f"{q.prevalence:.3f} relevant, Brier {q.brier:.4f} (base rate "
            f"{q.brier_of_prevalence:.4f}), ECE {q.expected_calibration_error:.4f}"
        )
    if result.comparison is not None:
        c = result.comparison
        typer.echo(
            f"vs {c.baseline} on {c.measure}: {c.mean_difference:+.4f} "
            f"({c.wins} wins / {c.losses} losses / {c.ties} ties, paired t p={c.p_value:.4g})"
        )
    typer.echo(f"wrote {out}/run.trec, metrics.json, report.md")


@train_app.command("lite")
@user_errors
def train_lite_command(
    config: ConfigFile = None,
    out: OutFolder = None,
    scorer: Annotated[
        str | None, typer.Option(help="maxsim, sorted, separable, flattened", envvar=env("scorer"))
    ] = None,
    dim: Annotated[int | None, typer.Option(help="projection width", envvar=env("dim"))] = None,
    max_steps: MaxSteps = None,
    learning_rate: LearningRate = None,
    batch_size: BatchSize = None,
    seed: Seed = None,
    cache: Annotated[
        Path | None, typer.Option(help="token-state cache file (.npz)", envvar=env("cache"))
    ] = None,
    trainable_layers: Annotated[
        int | None,
        typer.Option(
            help="also fine-tune the top N backbone layers", envvar=env("trainable_layers")
        ),
    ] = None,
    triples: TriplesFiles = None,
    device: Device = None,
    assignments: ConfigAssignments = None,
    quiet: Quiet = False,
) -> None:
    """Train a LITE (or MaxSim) late-interaction re-ranker; the best model lands in OUT/best.

    Every config field can be given: in the --config file, with --set KEY=VALUE, or for the
    common ones with their named flag."""
    from training.lite_job import load_lite_config, train_lite

    overrides: dict[str, object] = {
        **schedule_overrides(out, max_steps, learning_rate, batch_size, seed, device),
        "dim": dim,
        "cache": cache,
        "trainable_layers": trainable_layers,
        "data": triples_sources(triples),
    }
    if scorer is not None:
        overrides["scorer"] = {"kind": scorer}
    train_config = load_job_config(load_lite_config, config, overrides, assignments)
    result = train_lite(train_config, show_progress=not quiet)
    typer.echo(
        f"trained {result.steps} steps; best dev nDCG@10 {result.best_metric} at step "
        f"{result.best_step}; model in {train_config.out / 'best'}"
    )


register_serve(app)
register_generate(app)
register_calibrate(app)
register_gmlm(train_app)
register_softsrv(train_app)


@train_app.command("dual")
@user_errors
def train_dual_command(
    config: ConfigFile = None,
    out: OutFolder = None,
    model: Annotated[
        str | None, typer.Option(help="encoder to fine-tune", envvar=env("model"))
    ] = None,
    laurel: Annotated[
        str | None, typer.Option(help="LAuReL variants, e.g. rw,lr", envvar=env("laurel"))
    ] = None,
    max_steps: MaxSteps = None,
    learning_rate: LearningRate = None,
    batch_size: BatchSize = None,
    seed: Seed = None,
    triples: TriplesFiles = None,
    device: Device = None,
    assignments: ConfigAssignments = None,
    quiet: Quiet = False,
) -> None:
    """Fine-tune the dual encoder (contrastive, in-batch + hard negatives, optional LAuReL);
    the best encoder lands in OUT/best, ready for `loupe index build --model OUT/best`."""
    from training.dual_job import load_dual_config, train_dual

    overrides: dict[str, object] = {
        **schedule_overrides(out, max_steps, learning_rate, batch_size, seed, device),
        "model": model,
        "laurel": laurel.split(",") if laurel else None,
        "data": triples_sources(triples),
    }
    train_config = load_job_config(load_dual_config, config, overrides, assignments)
    result = train_dual(train_config, show_progress=not quiet)
    typer.echo(
        f"trained {result.steps} steps; best dev nDCG@10 {result.best_metric} at step "
        f"{result.best_step}; encoder in {train_config.out / 'best'}"
    )


@export_app.command("onnx")
@user_errors
def export_onnx_command(
    model: Annotated[
        str, typer.Argument(help="encoder ('default', folder, HF name) or re-ranker folder")
    ],
    out: Annotated[Path, typer.Option(help="folder for the .onnx files", envvar=env("out"))],
    int8: Annotated[
        bool, typer.Option(help="also write int8 dynamically quantised graphs", envvar=env("int8"))
    ] = False,
) -> None:
    """Export to ONNX (dynamic batch and sequence axes) and print parity against PyTorch."""
    from models.onnx_export import export_onnx

    for report in export_onnx(model, out, int8=int8):
        rank = f", Spearman {report.spearman:.4f}" if report.spearman is not None else ""
        typer.echo(f"{report.graph}: max abs difference {report.max_abs_difference:.2e}{rank}")
    typer.echo(f"wrote {out}")


def main() -> None:
    settings = CommonSettings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    app()


if __name__ == "__main__":
    main()
