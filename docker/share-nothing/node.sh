#!/bin/sh
# A node's entry point: mount the storage container's GlusterFS volume at $DDL_SHARED (the FUSE client,
# inside this container: the engine sees no mount), then run the node's command.
set -eu
shared=${DDL_SHARED:-/shared}
mkdir -p "$shared"
for _ in $(seq 120); do
  mountpoint -q "$shared" && break
  mount -t glusterfs -o log-file=/var/log/glusterfs-shared.log "${DDL_STORAGE:-storage}:/data" "$shared" 2>/dev/null || sleep 0.5
done
mountpoint -q "$shared" || { echo "node.sh: could not mount ${DDL_STORAGE:-storage}:/data at $shared" >&2; exit 1; }
exec "$@"
