from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from loupe.cli import app

runner = CliRunner()


def test_index_search_and_eval_end_to_end(
    tmp_path: Path, tiny_corpus: Path, tiny_model_dir
) -> None:
    index = tmp_path / "index"
    result = runner.invoke(
        app,
        [
            "index",
            "build",
            "--corpus",
            str(tiny_corpus),
            "--out",
            str(index),
            "--model",
            str(tiny_model_dir),
            "--bm25",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "indexed 4 documents" in result.output

    result = runner.invoke(
        app,
        ["search", "Dogs are loyal companions and good pets.", "--index", str(index), "-k", "2"],
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].split()[2] == "d3"
    # only d4 has {"lang": "en"} in its metadata; BM25 takes no filter
    en = ["search", "Dogs are loyal pets.", "--index", str(index), "--filter", "lang=en"]
    result = runner.invoke(app, en)
    assert result.exit_code == 0, result.output
    assert [line.split()[2] for line in result.output.splitlines()] == ["d4"]
    result = runner.invoke(app, [*en, "--first-stage", "bm25"])
    assert result.exit_code != 0 and "takes no metadata filter" in result.output
    result = runner.invoke(app, [*en, "--first-stage", "lexical"])  # no shared word: no hit
    assert result.exit_code == 0 and result.output.strip() == "", result.output
    dogs = ["search", "Dogs are loyal companions and good pets.", "--index", str(index)]
    result = runner.invoke(app, [*dogs, "--first-stage", "hybrid", "-k", "4"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[2] == "d3" and len(lines) == 4

    # re-ranked: the first stage's top --depth in the re-ranker's order, with its P
    from models.cross_encoder import CrossEncoderConfig, CrossEncoderReranker
    from tests.conftest import build_tiny_bert

    folder = build_tiny_bert(tmp_path / "cross-encoder", labels=1)
    result = runner.invoke(app, [*dogs, "--reranker", str(folder), "--depth", "4", "-k", "3"])
    assert result.exit_code == 0, result.output
    texts = {
        row["_id"]: f"{row.get('title', '')} {row['text']}".strip()
        for row in map(json.loads, tiny_corpus.read_text().splitlines())
    }
    ce = CrossEncoderReranker.load(CrossEncoderConfig(str(folder), device="cpu"))
    expected = sorted(texts, key=lambda d: -float(ce.score(dogs[1], [texts[d]])[0]))[:3]
    rows = [line.split() for line in result.output.splitlines()]
    assert [row[2] for row in rows] == expected
    assert all(row[3].startswith("P=") for row in rows)

    queries = tmp_path / "queries.tsv"
    queries.write_text("q1\tDogs are loyal companions and good pets.\n")
    qrels = tmp_path / "qrels.trec"
    qrels.write_text("q1 0 d3 1\n")
    out = tmp_path / "eval"
    result = runner.invoke(
        app,
        [
            "eval",
            "--queries",
            str(queries),
            "--qrels",
            str(qrels),
            "--index",
            str(index),
            "--out",
            str(out),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metrics"]["RR@10"] == 1.0
    assert (out / "run.trec").read_text().startswith("q1 Q0 d3 1 ")

    rerank_out = tmp_path / "rerank"
    result = runner.invoke(
        app,
        [
            "eval",
            "--queries",
            str(queries),
            "--qrels",
            str(qrels),
            "--candidates",
            str(out / "run.trec"),
            "--corpus",
            str(tiny_corpus),
            "--reranker",
            str(tiny_model_dir),
            "--compare",
            str(out / "run.trec"),
            "--out",
            str(rerank_out),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (rerank_out / "per_query_differences.png").is_file()
    assert "wins" in (rerank_out / "report.md").read_text()


def test_bad_input_exits_2_naming_file_and_line(tmp_path: Path, tiny_model_dir) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "1", "text": "ok"}\n{"_id": "2"}\n')
    result = runner.invoke(
        app,
        [
            "index",
            "build",
            "--corpus",
            str(corpus),
            "--out",
            str(tmp_path / "i"),
            "--model",
            str(tiny_model_dir),
            "-q",
        ],
    )
    assert result.exit_code == 2
    assert "c.jsonl:2" in result.output


def test_eval_without_judgments_writes_the_run_alone(
    tmp_path: Path, tiny_corpus: Path, tiny_model_dir
) -> None:
    """Queries whose judgments are held elsewhere (a leaderboard's, a TREC track's): every
    query is ranked, as it would be with judgments, and nothing is scored."""
    index = tmp_path / "index"
    build = ["index", "build", "--corpus", str(tiny_corpus), "--out", str(index)]
    assert runner.invoke(app, [*build, "--model", str(tiny_model_dir), "-q"]).exit_code == 0
    queries = tmp_path / "queries.tsv"
    queries.write_text("q1\tDogs are loyal pets.\nq2\tthe stock market\n")
    qrels = tmp_path / "qrels.trec"
    qrels.write_text("q1 0 d3 1\nq2 0 d2 1\n")
    base = ["eval", "--queries", str(queries), "--index", str(index), "-q"]
    judged = runner.invoke(app, [*base, "--qrels", str(qrels), "--out", str(tmp_path / "j")])
    assert judged.exit_code == 0, judged.output
    result = runner.invoke(app, [*base, "--out", str(tmp_path / "u")])
    assert result.exit_code == 0, result.output
    assert "2 queries ranked; no judgments" in result.output
    run = (tmp_path / "u" / "run.trec").read_text()
    assert run == (tmp_path / "j" / "run.trec").read_text()
    assert {line.split()[0] for line in run.splitlines()} == {"q1", "q2"}
    metrics = json.loads((tmp_path / "u" / "metrics.json").read_text())
    assert metrics["metrics"] is None and metrics["num_queries"] == 2
    assert metrics["config"]["approximate"] == {"nprobe": None, "ef_search": None}
    tuned = runner.invoke(app, [*base, "--ef-search", "50", "--out", str(tmp_path / "t")])
    assert tuned.exit_code == 0, tuned.output
    recorded = json.loads((tmp_path / "t" / "metrics.json").read_text())["config"]
    assert recorded["approximate"] == {"nprobe": None, "ef_search": 50}
    assert "unscored" in (tmp_path / "u" / "report.md").read_text()

    rerank = [
        *base[:3],
        "--candidates",
        str(tmp_path / "u" / "run.trec"),
        "--corpus",
        str(tiny_corpus),
        "--reranker",
        str(tiny_model_dir),
        "-q",
    ]
    reranked = runner.invoke(app, [*rerank, "--out", str(tmp_path / "r")])
    assert reranked.exit_code == 0, reranked.output
    reranked_judged = [*rerank, "--qrels", str(qrels), "--out", str(tmp_path / "rj")]
    assert runner.invoke(app, reranked_judged).exit_code == 0
    assert (tmp_path / "r" / "run.trec").read_text() == (tmp_path / "rj" / "run.trec").read_text()

    scored = runner.invoke(
        app, [*base[:3], "--run", str(tmp_path / "u" / "run.trec"), "--out", str(tmp_path / "s")]
    )
    assert scored.exit_code == 2 and "needs judgments: give --qrels" in scored.output


def test_eval_needs_exactly_one_source(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "--queries", "q", "--qrels", "r", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "exactly one of" in result.output


def test_options_read_environment_variables(tmp_path: Path) -> None:
    result = runner.invoke(app, ["search", "hello"], env={"LOUPE_INDEX": str(tmp_path / "missing")})
    assert result.exit_code == 2
    assert "not a Loupe index" in result.output


def test_eval_with_the_bm25_first_stage(tmp_path: Path, tiny_corpus: Path, tiny_model_dir) -> None:
    index = tmp_path / "index"
    build = [
        "index",
        "build",
        "--corpus",
        str(tiny_corpus),
        "--out",
        str(index),
        "--model",
        str(tiny_model_dir),
        "--bm25",
        "-q",
    ]
    assert runner.invoke(app, build).exit_code == 0
    queries = tmp_path / "queries.tsv"
    queries.write_text("q1\tstock market\n")
    qrels = tmp_path / "qrels.trec"
    qrels.write_text("q1 0 d2 1\n")
    out = tmp_path / "eval"
    args = [
        "eval",
        "--queries",
        str(queries),
        "--qrels",
        str(qrels),
        "--index",
        str(index),
        "--first-stage",
        "bm25",
        "--out",
        str(out),
        "-q",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    # BM25 returns only the one passage sharing a term with the query.
    assert (out / "run.trec").read_text().splitlines() == [
        line for line in (out / "run.trec").read_text().splitlines() if " d2 " in line
    ]
    assert json.loads((out / "metrics.json").read_text())["metrics"]["RR@10"] == 1.0


def test_help_reflows_docstrings_and_keeps_brackets() -> None:
    """A command's summary reads as one paragraph, not the docstring's line breaks, and
    `loupe[qdrant]` is not taken for markup."""
    wide = {"COLUMNS": "200"}
    listing = runner.invoke(app, ["--help"], env=wide)
    assert listing.exit_code == 0, listing.output
    line = next(x for x in listing.output.splitlines() if " search " in x)
    assert "(or a service with --url, which re-ranks)" in line
    build = runner.invoke(app, ["index", "build", "--help"], env=wide)
    assert "loupe[qdrant]" in build.output
