"""Node control groups on this machine's real cgroup hierarchy (no Spark): limits, accounting, freezing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from ddl_commodity.errors import UserInputError
from ddl_commodity.resources import cgroups

_REASON = cgroups.unavailable_reason()
needs_cgroups = pytest.mark.skipif(_REASON is not None, reason=f"no writable cgroups: {_REASON}")


def test_sizes_parse_like_spark_and_docker() -> None:
    assert cgroups.parse_size("2g") == 2 * 2**30
    assert cgroups.parse_size("512M") == 512 * 2**20
    assert cgroups.parse_size("1.5GiB") == int(1.5 * 2**30)
    assert cgroups.parse_size("4096") == 4096
    with pytest.raises(UserInputError, match="memory size 'lots'"):
        cgroups.parse_size("lots")


def test_enter_command_execs_in_place() -> None:
    group = cgroups.NodeGroup(node="n", version=1, dirs={"cpu": "/x/cpu", "memory": "/x/mem"})
    argv = cgroups.enter_command(group, ["java", "-cp", "a b"])
    assert argv[:2] == ["sh", "-c"] and argv[-4:] == ["--", "java", "-cp", "a b"]
    assert argv[4:6] == ["/x/cpu/cgroup.procs", "/x/mem/cgroup.procs"]
    assert cgroups.enter_command(None, ["java"]) == ["java"]


@pytest.mark.serial  # measures a CPU share: under the parallel part's load the loop can get 0.17 of its 0.25
@needs_cgroups
def test_a_node_group_caps_cpu_accounts_and_freezes() -> None:
    """A busy loop in a 0.25-core group gets 0.25 of a core; frozen it gets none; the group goes away."""
    cid = uuid.uuid4().hex[:12]
    (group,) = cgroups.create_node_groups(cid, {"node1": cgroups.NodeLimits(cpus=0.25, memory=256 * 2**20)})
    loop = subprocess.Popen(cgroups.enter_command(group, [sys.executable, "-c", "while True: pass"]))
    try:
        deadline = time.monotonic() + 10
        while loop.pid not in group.pids():
            assert time.monotonic() < deadline, "the loop never joined its group"
            time.sleep(0.05)
        assert group.cpus() == 0.25
        time.sleep(0.5)  # past the interpreter's start
        u0 = group.usage()
        time.sleep(2.0)
        u1 = group.usage()
        share = (u1.cpu_seconds - u0.cpu_seconds) / (u1.time - u0.time)
        assert abs(share - 0.25) <= 0.025, share
        assert u1.nr_throttled > u0.nr_throttled and u1.throttled_seconds > u0.throttled_seconds
        assert u1.memory_limit == 256 * 2**20 and 0 < u1.memory_bytes < u1.memory_limit
        # Run-queue delay of the throttled loop: most of the wall time (it waits whenever it may not run).
        waited = sum(cgroups.run_delay_seconds([loop.pid]).values())
        assert waited > 1.0, waited

        group.freeze(True)
        assert group.frozen()
        time.sleep(0.3)
        f0 = group.usage()
        time.sleep(1.0)
        assert group.usage().cpu_seconds - f0.cpu_seconds < 0.01
        group.freeze(False)
        assert not group.frozen()
    finally:
        loop.send_signal(signal.SIGKILL)
        loop.wait()
    cgroups.remove_groups([group])
    assert not any(os.path.exists(d) for d in group.dirs.values())
    assert not any(p.name == f"ddl-{cid}" for p in cgroups.leftover_groups())
