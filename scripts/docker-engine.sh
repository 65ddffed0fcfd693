#!/usr/bin/env bash
# Install (Debian/Ubuntu, as root) and start a Docker engine for the compose cluster, or stop it again.
#   scripts/docker-engine.sh start    # apt-get install docker.io docker-compose debootstrap if missing, start dockerd
#   scripts/docker-engine.sh stop     # stop the dockerd this script started; restore the iptables rules
# dockerd sets the FORWARD policy to DROP and adds its chains and NAT rules; start saves the rules it found
# (iptables-save), stop puts them back and removes docker0.
set -euo pipefail
state=${DDL_DOCKER_STATE:-/run/ddl-docker}
log() { printf '[docker-engine] %s\n' "$*" >&2; }

start() {
  if docker info >/dev/null 2>&1; then log "an engine already answers"; return 0; fi
  [ "$(id -u)" = 0 ] || { log "needs root to install and start dockerd"; exit 2; }
  if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null \
      || { ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; }; then
    command -v apt-get >/dev/null || { log "no dockerd and no apt-get to install it"; exit 2; }
    log "installing docker.io, docker-compose, debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose debootstrap >/dev/null
  fi
  mkdir -p "$state"
  iptables-save > "$state/iptables" 2>/dev/null || true
  # overlay2 where the filesystem allows it (ext4 here), else vfs (slow: a full copy per layer).
  for driver in overlay2 vfs; do
    dockerd --storage-driver="$driver" >"$state/dockerd.log" 2>&1 &
    echo $! > "$state/dockerd.pid"
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && { log "dockerd up ($driver)"; return 0; }; sleep 0.5
      kill -0 "$(cat "$state/dockerd.pid")" 2>/dev/null || break; done
    kill "$(cat "$state/dockerd.pid")" 2>/dev/null || true
    log "dockerd did not start with $driver: $(tail -n 1 "$state/dockerd.log")"
  done
  exit 1
}

stop() {
  [ -f "$state/dockerd.pid" ] || { log "no dockerd started by this script"; return 0; }
  pid=$(cat "$state/dockerd.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  [ -s "$state/iptables" ] && iptables-restore < "$state/iptables"
  ip link del docker0 2>/dev/null || true
  rm -f "$state/dockerd.pid"
  log "dockerd stopped; iptables rules as before it started"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
