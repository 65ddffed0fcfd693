#!/usr/bin/env bash
# README command 2 (and .ci/run): set up, lint, then the whole test suite (unit + real-cluster tests).
# Two workers run the tests side by side (pytest-xdist; the tests of a module that shares one cluster stay
# on one worker); the few tests that measure CPU shares then run alone. Extra arguments go to both runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
status=0
.venv/bin/python -m pytest -q -m "not serial" -n 2 --dist loadgroup "$@" || status=$?
serial=0
.venv/bin/python -m pytest -q -m serial "$@" || serial=$?
[ "$serial" = 5 ] && serial=0   # 5: no serial test was selected (e.g. by -k)
[ "$status" = 5 ] && status=0
exit $(( status != 0 ? status : serial ))
