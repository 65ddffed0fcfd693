#!/usr/bin/env bash
# What the cgroup v2 tests (tests/vm, marker vm) need to boot their QEMU virtual machine: QEMU, a Debian kernel
# with its modules (the guest's kernel) and a static busybox (the guest's /init). Installs what is missing with
# apt-get (root); idempotent. Where it cannot install them it says so and exits 0: the vm tests are then
# skipped, saying why.
set -euo pipefail

log() { printf '[vm-setup] %s\n' "$*" >&2; }

need=()
for pkg in qemu-system-x86 linux-image-amd64 busybox-static; do
  dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  log "the vm tests need ${need[*]} (e.g. 'sudo apt-get install ${need[*]}'); they are skipped until then"
  exit 0
fi
start=$(date +%s)
log "installing ${need[*]} with apt-get"
if apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
  log "installed in $(( $(date +%s) - start )) s"
else
  log "apt-get could not install ${need[*]}; the vm tests are skipped"
fi
