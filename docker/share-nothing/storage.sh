#!/bin/sh
# The storage container: glusterd in the foreground, one volume `data` on a brick in the container's own
# file system (`force`: the brick is not on a partition of its own), started once glusterd answers.
set -eu
glusterd -N --log-file=- &
daemon=$!
for _ in $(seq 120); do gluster --mode=script pool list >/dev/null 2>&1 && break; sleep 0.5; done
mkdir -p /bricks/data
if ! gluster --mode=script volume info data >/dev/null 2>&1; then
  gluster --mode=script volume create data "$(hostname):/bricks/data" force
fi
gluster --mode=script volume start data force
echo "storage: volume data started" >&2
wait "$daemon"
