#!/usr/bin/env bash
# README command 2 (and .ci/run): set up, lint, then the whole test suite (unit + real-cluster tests).
# Three workers run the tests side by side (pytest-xdist; the tests of a module that shares one cluster, the
# compose cluster's included, stay on one worker; with two, a quarter of the 2 cores sits idle while runs wait
# on heartbeats and JVMs); the few tests that measure CPU shares or rates then run alone.
# Extra arguments go to every run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/vm-setup.sh   # QEMU and a kernel for the cgroup v2 tests (tests/vm)
.venv/bin/ruff check .
# The documentation site: a broken link or anchor, a page left out of the navigation, a stale placeholder fail it.
site=$(mktemp -d)
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$site"
rm -rf "$site"
status=0
.venv/bin/python -m pytest -q -m "not serial" -n 3 --dist loadgroup "$@" || status=$?
serial=0
.venv/bin/python -m pytest -q -m serial "$@" || serial=$?
for v in status serial; do [ "${!v}" = 5 ] && printf -v "$v" 0; done   # 5: nothing selected (-k)
exit $(( status != 0 ? status : serial ))
