#!/usr/bin/env bash
# Build a local base image for docker/Dockerfile where no image registry is reachable: Debian bookworm
# (minbase, from the mirror apt already uses) with Python 3.11, Java 17 and the host's CA bundle, imported
# as ddl-commodity-base:bookworm. Then: docker build --build-arg BASE_IMAGE=ddl-commodity-base:bookworm ...
# Needs root, debootstrap and a running Docker engine. Prints the time it took and the image size.
set -euo pipefail
tag=${1:-ddl-commodity-base:bookworm}
[ "$(id -u)" = 0 ] || { echo "docker-base.sh: needs root (debootstrap)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "docker-base.sh: needs debootstrap (apt-get install debootstrap)" >&2; exit 2; }
docker info >/dev/null 2>&1 || { echo "docker-base.sh: no Docker engine answers (scripts/docker-engine.sh start)" >&2; exit 2; }

mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n 1)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
[ -n "$mirror" ] || { echo "docker-base.sh: no Debian mirror found in apt's sources" >&2; exit 2; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
start=$(date +%s)
echo "debootstrap bookworm from $mirror ..."
debootstrap --variant=minbase \
  --include=python3,python3-venv,openjdk-17-jre-headless,procps,iproute2,ca-certificates \
  bookworm "$root" "$mirror" >/dev/null
# pip inside a container must trust what the host trusts (a proxy's CA, where there is one).
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
echo "$tag built in $(( $(date +%s) - start )) s, $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
