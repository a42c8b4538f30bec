"""Benchmarks, metrics (through ir_measures), batch runs, comparisons and reports."""

from __future__ import annotations
