"""``loupe serve`` fills the settings from flags and variables; ``loupe search --url``."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from loupe.cli import app
from service.settings import ServiceSettings


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[ServiceSettings]:
    import service.server

    seen: list[ServiceSettings] = []
    monkeypatch.setattr(
        service.server, "run_server", lambda settings, log_level: seen.append(settings)
    )
    for name in ("LOUPE_PORT", "LOUPE_API_KEY", "LOUPE_QUEUE_SIZE", "LOUPE_INDEX"):
        monkeypatch.delenv(name, raising=False)
    return seen


def test_serve_flags_fill_the_settings(captured, tmp_path: Path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"_id": "1", "text": "t"}\n')
    result = CliRunner().invoke(
        app,
        [
            "serve",
            "--host", "0.0.0.0",
            "--port", "9001",
            "--index", str(tmp_path / "ix"),
            "--encoder", "enc",
            "--reranker", "rr",
            "--api-key", "k",
            "--corpus", str(corpus),
            "--max-batch-size", "1",
            "--cors-origins", "https://app.example",
            "--ef-search", "300",
            "--nprobe", "12",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (settings,) = captured
    assert (settings.ef_search, settings.nprobe) == (300, 12)
    assert settings.cors_origin_list() == ("https://app.example",)
    assert (settings.host, settings.port, settings.index) == ("0.0.0.0", 9001, tmp_path / "ix")
    assert (settings.encoder, settings.reranker, settings.corpus) == ("enc", "rr", corpus)
    assert settings.api_key_value() == "k"
    assert not settings.batching_enabled
    assert settings.queue_size == ServiceSettings.model_fields["queue_size"].default


def test_serve_reads_environment_variables(captured, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LOUPE_PORT", "9002")
    monkeypatch.setenv("LOUPE_API_KEY", "from-env")
    monkeypatch.setenv("LOUPE_QUEUE_SIZE", "7")  # no flag: read by the settings themselves
    assert CliRunner().invoke(app, ["serve"]).exit_code == 0
    (settings,) = captured
    assert (settings.port, settings.api_key_value(), settings.queue_size) == (9002, "from-env", 7)


def test_serve_refuses_a_missing_corpus(captured, tmp_path: Path):
    result = CliRunner().invoke(app, ["serve", "--corpus", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2 and not captured


def test_search_url_uses_the_service(live_server, monkeypatch: pytest.MonkeyPatch):
    server = live_server(api_key="k")
    monkeypatch.setenv("LOUPE_API_KEY", "k")
    for _ in range(600):
        if httpx.get(f"{server.url}/ready").status_code == 200:
            break
        time.sleep(0.05)
    docs = [{"id": "a", "text": "a loupe magnifies"}, {"id": "b", "text": "bananas"}]
    httpx.post(
        f"{server.url}/v1/documents",
        json={"documents": docs},
        headers={"Authorization": "Bearer k"},
    ).raise_for_status()
    result = CliRunner().invoke(app, ["search", "loupe", "--url", server.url, "-k", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 2 and lines[0].split()[0] == "1"
    assert {line.split()[2] for line in lines} == {"a", "b"}
    httpx.post(
        f"{server.url}/v1/documents",
        json={"documents": [{"id": "c", "text": "a loupe", "metadata": {"kind": "tool"}}]},
        headers={"Authorization": "Bearer k"},
    ).raise_for_status()
    only = ["search", "loupe", "--url", server.url, "--filter", "kind=tool"]
    result = CliRunner().invoke(app, only)
    assert result.exit_code == 0, result.output
    assert [line.split()[2] for line in result.output.strip().splitlines()] == ["c"]


def test_search_url_shows_probabilities_from_a_calibrated_service(live_server, tiny_models):
    from models.calibration import ScoreCalibration
    from models.reranker import DualEncoderReranker

    calibrated = DualEncoderReranker(tiny_models[0], calibration=ScoreCalibration(8.0, -2.0))
    server = live_server(reranker=calibrated)
    for _ in range(600):
        if httpx.get(f"{server.url}/ready").status_code == 200:
            break
        time.sleep(0.05)
    docs = [{"id": "a", "text": "a loupe magnifies"}, {"id": "b", "text": "bananas"}]
    httpx.post(f"{server.url}/v1/documents", json={"documents": docs}).raise_for_status()
    result = CliRunner().invoke(app, ["search", "loupe", "--url", server.url, "-k", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert {line.split()[2] for line in lines} == {"a", "b"}
    assert all(0.0 <= float(line.split()[3].removeprefix("P=")) <= 1.0 for line in lines)


def test_search_needs_index_or_url():
    result = CliRunner().invoke(app, ["search", "loupe"])
    assert result.exit_code == 2
    assert "--url" in result.output
