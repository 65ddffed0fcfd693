#!/usr/bin/env bash
# The five-node compose cluster (docker/docker-compose.yml): master + 4 workers, 1 core and 2 GB each.
#   scripts/docker-cluster.sh up               # build the image if missing, start, wait for the 4 workers
#   scripts/docker-cluster.sh submit CONFIG    # ddl run CONFIG in the master (a path inside /opt/ddl,
#                                              # e.g. configs/docker/quickstart.yaml); results in ./runs
#   scripts/docker-cluster.sh status           # containers, CPU, memory, network
#   scripts/docker-cluster.sh down             # remove containers, network and volumes
#   scripts/docker-cluster.sh --share-nothing up|submit CONFIG --env ARCHIVE|status|down|build
#                                              # the cluster of docker/docker-compose.share-nothing.yml:
#                                              # toolkit-less workers, a GlusterFS storage container
# Works with `docker compose` (v2) and `docker-compose` (v1). Where no registry is reachable, `up` builds
# on a local base image (scripts/docker-base.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
project=ddl-commodity
file=docker/docker-compose.yml
image=ddl-commodity:latest
share_nothing=false
if [ "${1:-}" = --share-nothing ]; then
  share_nothing=true project=ddl-commodity-sn file=docker/docker-compose.share-nothing.yml
  shift
fi
log() { printf '[docker-cluster] %s\n' "$*" >&2; }

compose() {
  # Removing a worker that unpacked shipped environments takes longer than compose v1's 60 s default.
  export COMPOSE_HTTP_TIMEOUT=${COMPOSE_HTTP_TIMEOUT:-300}
  if docker compose version >/dev/null 2>&1; then docker compose -p "$project" -f "$file" "$@"
  elif command -v docker-compose >/dev/null; then docker-compose -p "$project" -f "$file" "$@"
  else log "neither 'docker compose' nor docker-compose is installed (scripts/docker-engine.sh start)"; exit 2; fi
}

# The base image: python:3.11-slim where a registry has it, else a local Debian one (scripts/docker-base.sh).
base_image() {
  local base=python:3.11-slim-bookworm
  if ! docker image inspect "$base" >/dev/null 2>&1 && ! timeout 60 docker pull -q "$base" >/dev/null 2>&1; then
    base=ddl-commodity-base:bookworm
    docker image inspect "$base" >/dev/null 2>&1 || bash scripts/docker-base.sh "$base" >&2
  fi
  echo "$base"
}

size_of() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1/1e6}'; }

build() {
  local base t0=$SECONDS
  base=$(base_image)
  docker build -q -f docker/Dockerfile --build-arg BASE_IMAGE="$base" -t "$image" . >/dev/null
  log "built $image on $base in $(( SECONDS - t0 )) s, $(size_of "$image")"
  $share_nothing || return 0
  # On the toolkit image's base: a packed environment's python links to the base interpreter's path.
  for target in storage worker master; do
    t0=$SECONDS
    docker build -q -f docker/share-nothing/Dockerfile --target "$target" --build-arg BASE_IMAGE="$base" \
      --build-arg TOOLKIT_IMAGE="$image" -t "ddl-commodity-$target:latest" docker/share-nothing >/dev/null
    log "built ddl-commodity-$target on $base in $(( SECONDS - t0 )) s, $(size_of "ddl-commodity-$target:latest")"
  done
}

up() {
  local needed=$image
  $share_nothing && needed=ddl-commodity-worker:latest
  docker image inspect "$needed" >/dev/null 2>&1 || build
  mkdir -p runs data
  local t0=$SECONDS
  compose up -d --no-build >/dev/null
  for _ in $(seq 120); do
    workers=$(docker exec "$(compose ps -q master)" python -c "
import json, urllib.request
print(sum(w['state'] == 'ALIVE' for w in json.load(urllib.request.urlopen('http://localhost:8080/json/'))['workers']))
" 2>/dev/null || echo 0)
    [ "$workers" = 4 ] && { log "up in $(( SECONDS - t0 )) s: master + 4 workers at spark://master:7077"; return 0; }
    sleep 0.5
  done
  log "the 4 workers did not register within 60 s"; compose logs --tail 20; exit 1
}

case "${1:-}" in
  up) up ;;
  submit) [ -n "${2:-}" ] || { log "usage: $0 submit CONFIG"; exit 2; }
          docker exec "$(compose ps -q master)" ddl run "$2" --no-progress "${@:3}" ;;
  status) compose ps
          docker stats --no-stream --format 'table {{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.NetIO}}' \
            $(compose ps -q) ;;
  down) compose down -v --remove-orphans ;;
  build) build ;;
  *) echo "usage: $0 up|submit CONFIG|status|down|build" >&2; exit 2 ;;
esac
