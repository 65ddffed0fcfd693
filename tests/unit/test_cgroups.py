"""Node control groups on this machine's real cgroup hierarchy (no Spark): limits, accounting, freezing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

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


#: /proc/self/mountinfo of three kinds of host, cgroup lines and the tmpfs under them.
HYBRID_SYSTEMD = """\
34 24 0:29 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
35 34 0:30 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
36 34 0:31 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
39 34 0:34 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,cpu,cpuacct
40 34 0:35 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,memory
41 34 0:36 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,freezer
42 34 0:37 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,relatime shared:19 - cgroup cgroup rw,net_cls,net_prio
"""
PURE_V2 = """\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""
#: A container without a cgroup namespace: its mounts show its own part of the host's v1 hierarchies.
CONTAINER_V1 = "".join(
    f"{60 + i} 50 0:{31 + i} /docker/abc123 /sys/fs/cgroup/{c} ro,nosuid - cgroup cgroup rw,{c}\n"
    for i, c in enumerate(("cpu", "cpuacct", "memory", "freezer")))
V2_CONTROLLERS = ["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"]


def test_a_hybrid_host_stays_on_v1_whatever_its_v2_mount_offers() -> None:
    table = cgroups.parse_mountinfo(HYBRID_SYSTEMD)
    assert table.unified == cgroups.CgroupMount(Path("/sys/fs/cgroup/unified"))
    layout = cgroups.choose_layout(table, [])
    assert layout is not None and layout.version == 1 and sorted(layout.mounts) == sorted(cgroups.V1_CONTROLLERS)
    assert layout.mounts["cpu"].point == layout.mounts["cpuacct"].point == Path("/sys/fs/cgroup/cpu,cpuacct")
    assert layout.mounts["freezer"].point == Path("/sys/fs/cgroup/freezer")
    assert cgroups.choose_layout(table, V2_CONTROLLERS).version == 1


def test_a_pure_v2_host_uses_the_unified_hierarchy_when_it_offers_cpu_and_memory() -> None:
    table = cgroups.parse_mountinfo(PURE_V2)
    assert table.v1 == {}
    layout = cgroups.choose_layout(table, V2_CONTROLLERS)
    assert layout == cgroups.Layout(version=2, mounts={"unified": cgroups.CgroupMount(Path("/sys/fs/cgroup"))})
    assert cgroups.choose_layout(table, ["cpu", "io", "pids"]) is None  # no memory controller to cap with
    assert cgroups.choose_layout(cgroups.parse_mountinfo(""), V2_CONTROLLERS) is None


def test_v1_missing_a_controller_falls_to_v2_or_to_nothing() -> None:
    without_freezer = "\n".join(line for line in HYBRID_SYSTEMD.splitlines() if "freezer" not in line)
    table = cgroups.parse_mountinfo(without_freezer)
    assert cgroups.choose_layout(table, []) is None
    assert cgroups.choose_layout(table, V2_CONTROLLERS).version == 2


def test_groups_are_found_under_a_mount_of_part_of_the_hierarchy() -> None:
    layout = cgroups.choose_layout(cgroups.parse_mountinfo(CONTAINER_V1))
    memory = layout.mounts["memory"]
    assert memory == cgroups.CgroupMount(Path("/sys/fs/cgroup/memory"), root="/docker/abc123")
    assert memory.directory("/docker/abc123/ddl-0123456789ab/node1") == Path(
        "/sys/fs/cgroup/memory/ddl-0123456789ab/node1")
    assert memory.directory("/docker/abc123") == Path("/sys/fs/cgroup/memory")
    assert cgroups.CgroupMount(Path("/sys/fs/cgroup")).directory("/user.slice/x") == Path("/sys/fs/cgroup/user.slice/x")


def test_escaped_mount_points_are_decoded() -> None:
    line = "40 34 0:35 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw\n"
    assert cgroups.parse_mountinfo(line).unified.point == Path("/mnt/my cgroups")


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
