#!/usr/bin/env bash
# README command 1: set up, then run configs/quickstart.yaml on an embedded local Spark cluster
# (1 PS + 2 workers), print the summary and the run directory. The cluster is stopped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/ddl run configs/quickstart.yaml "$@"
