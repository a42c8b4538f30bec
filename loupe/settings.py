"""Typed settings shared by the CLI commands; every field also reads ``LOUPE_<NAME>``."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """Settings every command shares."""

    model_config = SettingsConfigDict(env_prefix="LOUPE_", extra="ignore")

    device: str | None = None
    """torch device: ``cuda``, ``cpu``, ``cuda:1``; default: CUDA when present."""
    log_level: str = "WARNING"
