#!/usr/bin/env bash
# README command 2 (and .ci/run): set up, lint, then the whole test suite (unit + real-cluster tests).
# Two workers run the tests side by side (pytest-xdist; a module that shares one cluster stays on one
# worker); the few tests that measure CPU shares then run alone. Extra arguments go to both pytest runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest -q -m "not serial" -n 2 --dist loadgroup "$@"
exec .venv/bin/python -m pytest -q -m serial "$@"
