#!/usr/bin/env bash
# Install (Debian/Ubuntu, as root) and start a Docker engine for the compose cluster, or stop it again.
#   scripts/docker-engine.sh start    # apt-get install docker.io docker-compose debootstrap if missing, start dockerd
#   scripts/docker-engine.sh stop     # stop the dockerd this script started; restore the iptables rules
# dockerd sets the FORWARD policy to DROP, adds its chains and NAT rules and sends bridged frames through
# iptables (br_netfilter); start notes what it found, stop removes what dockerd added, docker0 included.
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
  # 0 where br_netfilter is not loaded yet: dockerd loads it, and bridged frames then go through iptables
  cat /proc/sys/net/bridge/bridge-nf-call-iptables > "$state/bridge-nf" 2>/dev/null || echo 0 > "$state/bridge-nf"
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

# Remove what dockerd added (its chains, the rules naming them, docker0 and the compose networks' br-<id>
# bridges) and put FORWARD's policy back as it was; rules anyone else added meanwhile stay. A snapshot
# restore would not do: where no table was loaded before dockerd, the snapshot is empty and restores nothing.
restore_iptables() {
  local policy
  policy=$(sed -n 's/^:FORWARD \([A-Z]*\) .*/\1/p' "$state/iptables" 2>/dev/null | head -n 1)
  iptables-save | grep -v -E 'DOCKER|docker0|br-[0-9a-f]{12}' \
    | sed "s/^:FORWARD [A-Z]* /:FORWARD ${policy:-ACCEPT} /" | iptables-restore
}

stop() {
  [ -f "$state/dockerd.pid" ] || { log "no dockerd started by this script"; return 0; }
  pid=$(cat "$state/dockerd.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  restore_iptables
  ip link del docker0 2>/dev/null || true
  for f in /proc/sys/net/bridge/bridge-nf-call-ip{,6}tables; do
    [ -w "$f" ] && cat "$state/bridge-nf" > "$f" 2>/dev/null || true
  done
  rm -f "$state/dockerd.pid"
  log "dockerd stopped; iptables rules as before it started"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
