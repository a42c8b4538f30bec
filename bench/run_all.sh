#!/usr/bin/env bash
# Every issue-7 benchmark in full mode, then reports/performance.md rebuilt from the JSON.
# Run on a quiet machine; extra arguments go to bench/run_all.py (e.g. --only flops).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${LOUPE_VENV:-.venv}/bin/python" -m bench.run_all "$@"
