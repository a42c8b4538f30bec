"""Corpora, docstore, first-stage indexes and token store. Uses ``models``; nothing above."""

from __future__ import annotations
