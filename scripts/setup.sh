#!/usr/bin/env bash
# Idempotent set-up of a fresh machine: a Java runtime (for Spark), a Python 3.11 virtualenv in .venv with
# the toolkit installed in editable mode. Re-running it is cheap: pip is skipped while pyproject.toml is
# unchanged since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup] %s\n' "$*" >&2; }

# System packages: Java for Spark, and iptables: a namespace cluster's nodes talk through a host bridge,
# and where dockerd starts later (it loads br_netfilter and sets FORWARD's policy to DROP) only the FORWARD
# rule `ddl cluster up --netns` inserts keeps them connected; without iptables it can insert none.
need=()
command -v java >/dev/null 2>&1 || [ -n "${JAVA_HOME:-}" ] || need+=(openjdk-17-jre-headless)
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || need+=(iptables)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${need[*]} with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  elif [[ " ${need[*]} " == *" openjdk-17-jre-headless "* ]]; then
    log "Spark needs Java 17: install a JRE (e.g. 'sudo apt-get install openjdk-17-jre-headless') and re-run"
    exit 1
  else
    log "no iptables: a namespace cluster's nodes lose each other if dockerd starts while it runs"
  fi
fi

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PY=$cand; break
    fi
  done
fi
if [ -z "$PY" ]; then
  log "Python 3.11 is required (tensorflowonspark + tensorflow-cpu 2.21); set PYTHON=/path/to/python3.11"
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $PY"
  "$PY" -m venv .venv
fi

stamp=.venv/.ddl-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! .venv/bin/python -c 'import ddl_commodity, tensorflowonspark' 2>/dev/null; then
  log "installing the toolkit and its dependencies into .venv (first time: a few minutes)"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' >&2 || true
  # Spark first: the class-data archive of its JVMs (below; ~15 CPU-s on one core) builds while pip installs
  # the rest on the other core.
  spark=$(.venv/bin/python -c 'import tomllib; print(next(d for d in tomllib.load(open("pyproject.toml", "rb"))
    ["project"]["dependencies"] if d.startswith("pyspark")))')
  .venv/bin/python -m pip install -q --disable-pip-version-check "$spark" 2>&1 | grep -v '^WARNING: Location' >&2 || true
  .venv/bin/python -m ddl_commodity.runtime.jvm >/dev/null 2>&1 &
  archive=$!
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,docs]' 2>&1 | grep -v '^WARNING: Location' >&2 || true
  wait "$archive" || true
  # Installed, not imported: importing TensorFlow here would cost 3 s of every fresh set-up.
  .venv/bin/python -c 'import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in ("ddl_commodity", "tensorflow", "tensorflowonspark", "pyspark")))' \
    || { log "installation failed"; exit 1; }
  echo "$want" > "$stamp"
fi

# Spark's JVMs start on ~40% less CPU from a class-data archive built once per machine (ddl_commodity/runtime/jvm.py).
.venv/bin/python -m ddl_commodity.runtime.jvm | sed 's/^/[setup] /' >&2
