"""`loupe train lite` from the command line: named flags, --triples, --set and a config file."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from loupe.cli import app
from tests.training.test_lite_job import write_triples

runner = CliRunner()


def tiny_run_flags(tmp_path: Path, model_dir: Path) -> list[str]:
    """Flags for a few-second run of the tiny backbone on tiny triples."""
    return [
        "--triples",
        str(write_triples(tmp_path / "triples.tsv")),
        "--max-steps",
        "4",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--set",
        f"backbone={model_dir}",
        "--set",
        "q_len=8",
        "--set",
        "d_len=16",
        "--set",
        "negatives=2",
        "--set",
        "eval_every=2",
        "--set",
        "warmup_steps=1",
        "-q",
    ]


def test_train_lite_from_flags_alone(tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "out"
    flags = ["--set", "scorer.kind=sorted", "--set", "dim=4", "--dim", "8", "--set", "loss=ce"]
    result = runner.invoke(
        app, ["train", "lite", "--out", str(out), *flags, *tiny_run_flags(tmp_path, tiny_model_dir)]
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "best" / "config.json").read_text())
    assert saved["scorer"]["kind"] == "sorted"
    assert saved["dim"] == 8  # the named flag wins over --set
    trained = json.loads((out / "train_config.json").read_text())
    assert trained["data"] == [
        {"kind": "triples", "path": str(tmp_path / "triples.tsv"), "limit": None}
    ]
    assert trained["max_steps"] == 4 and trained["negatives"] == 2


def test_set_merges_into_the_config_files_tables(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = tmp_path / "lite.toml"
    config.write_text(
        f'out = "{tmp_path / "from-file"}"\ndim = 16\n\n'
        '[scorer]\nkind = "sorted"\ntop_k = 3\n\n'
        f'[[data]]\nkind = "triples"\npath = "{tmp_path / "missing.tsv"}"\n'
    )
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "train",
            "lite",
            "--config",
            str(config),
            "--out",
            str(out),
            "--set",
            "scorer.sorted_hidden=4",
            "--set",
            "dim=null",
            *tiny_run_flags(tmp_path, tiny_model_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "best" / "config.json").read_text())
    assert saved["dim"] is None
    scorer = saved["scorer"]
    assert (scorer["kind"], scorer["top_k"], scorer["sorted_hidden"]) == ("sorted", 3, 4)


def test_bad_assignments_exit_2_with_the_reason(tmp_path: Path) -> None:
    base = ["train", "lite", "--triples", str(tmp_path / "t.tsv"), "--out", str(tmp_path / "o")]
    cases = {
        "loss": "--set expects KEY=VALUE, got 'loss'",
        "no_such_field=1": "no_such_field",
        "negatives=many": "negatives",
    }
    for assignment, reason in cases.items():
        result = runner.invoke(app, [*base, "--set", assignment])
        assert result.exit_code == 2, assignment
        assert reason in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_set_and_triples_read_environment_variables(tmp_path: Path) -> None:
    env = {"LOUPE_TRIPLES": str(tmp_path / "absent.tsv"), "LOUPE_SET": "loss=kl negatives=x"}
    result = runner.invoke(app, ["train", "lite", "--out", str(tmp_path / "o")], env=env)
    assert result.exit_code == 2
    assert "negatives" in result.output  # LOUPE_SET was read: 'x' is no integer
    del env["LOUPE_SET"]
    result = runner.invoke(app, ["train", "lite", "--out", str(tmp_path / "o")], env=env)
    assert result.exit_code == 2
    assert "absent.tsv" in result.output  # LOUPE_TRIPLES was read
