#!/usr/bin/env bash
# README command 2 (and .ci/run): set up, lint, then the whole test suite (unit + real-cluster tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
