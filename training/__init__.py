"""Offline training jobs: data pipelines, losses, the shared trainer loop, negative mining."""

from __future__ import annotations
