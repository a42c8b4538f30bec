"""Loupe's front door: the ``loupe`` console script and its settings."""

from __future__ import annotations

__version__ = "0.1.0"
