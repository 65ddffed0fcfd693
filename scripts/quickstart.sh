#!/usr/bin/env bash
# README command 1: set up, write the quickstart's 16,000 spectra as a Parquet data set (once), then run
# configs/quickstart.yaml from it on an embedded local Spark cluster (1 PS + 2 workers), print the summary
# and the run directory. The cluster is stopped afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ ! -d data/quickstart-spectra ]; then
  .venv/bin/ddl data redshift --samples 16000 --seed 7 --format parquet --out data/quickstart-spectra
fi
exec .venv/bin/ddl run configs/quickstart.yaml "$@"
