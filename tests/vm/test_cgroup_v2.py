"""Node resources on a host that mounts cgroup v2 only, checked in a QEMU VM (:mod:`tests.vm.qemu`): CPU shares
(``cpu.max``, ``cpu.stat``), memory caps and OOM kills (``memory.max``, ``memory.events``), freezing
(``cgroup.freeze``) and tear-down, through the code ``ddl cluster up/fault/down`` and a run use
(:mod:`tests.vm.guest_checks`). One VM boot runs every check; the tests below read its report.

Under TCG every guest CPU is emulated, so absolute speed means nothing, but the guest kernel's CFS bandwidth
control still holds each group to its quota per period of the guest's clock: shares of a vCPU are what is
checked. The VM's two vCPUs are host threads, and a host busy with other work delays them past the guest's
period timers (measured on a host running 20-30 other runnable tasks: single nodes off by up to 20 %), which
is why the module runs alone (``serial``).
"""

from __future__ import annotations

import json
import sys

import pytest

from tests.vm import qemu

_REASON = qemu.unavailable_reason()
pytestmark = [pytest.mark.vm, pytest.mark.cluster, pytest.mark.serial,
              pytest.mark.skipif(_REASON is not None, reason=f"no QEMU VM here: {_REASON}")]

SHARE = 0.4
TOLERANCE = 0.10  # of the share; a 5 s window catches up to one 100 ms period's quota more or less


@pytest.fixture(scope="module")
def guest() -> dict:
    """The report of :mod:`tests.vm.guest_checks`, run once in a 2-vCPU VM."""
    result = qemu.run([sys.executable, "-m", "tests.vm.guest_checks"], timeout_s=900, cpus=2)
    console = "\n".join(result.console.splitlines()[-30:])
    assert result.returncode == 0, f"{result.stderr[-3000:]}\nconsole:\n{console}"
    report = json.loads(result.stdout)
    print(f"VM: booted in {result.boot_s:.1f} s, toolkit imported at {report['uptime_imported']:.1f} s, checks "
          f"done at {report['uptime_done']:.1f} s (per check: "
          f"{ {k: report[k].get('seconds') for k in ('shares', 'freeze', 'oom')} }), {result.wall_s:.1f} s in all")
    report["console"] = result.console
    return report


def no_error(part: dict) -> dict:
    assert "error" not in part, part["error"]
    return part


def test_the_guest_mounts_cgroup_v2_only_and_the_toolkit_uses_it(guest: dict) -> None:
    assert [line.split(" - ")[1].split()[0] for line in guest["mountinfo"]] == ["cgroup2"], guest["mountinfo"]
    assert guest["layout"] == 2 and guest["unavailable"] is None
    groups = no_error(guest["shares"])["groups"]
    assert all(g["version"] == 2 and list(g["dirs"]) == ["unified"] for g in groups), groups


def test_four_nodes_at_a_0_4_share_get_0_4_each_and_slow_halves_one(guest: dict) -> None:
    part = no_error(guest["shares"])
    print(f"4 nodes at {SHARE}: {part['shares']}; node1 slowed x2: {part['slowed_shares']}")
    assert sorted(part["shares"]) == ["node0", "node1", "node2", "node3"]
    assert all(abs(s - SHARE) <= TOLERANCE * SHARE for s in part["shares"].values()), part["shares"]
    assert part["files"] == {"cpu.max": "40000 100000", "memory.max": str(256 * 2**20), "memory.swap.max": "0"}
    slowed = part["slowed_shares"]
    assert abs(slowed["node1"] - SHARE / 2) <= TOLERANCE * SHARE / 2, slowed
    assert all(abs(slowed[n] - SHARE) <= TOLERANCE * SHARE for n in ("node0", "node2", "node3")), slowed
    # `ddl cluster status`: the share, throttling (cpu.stat) and memory cap (memory.max) of each node
    rows = {row["name"]: row for row in part["status"]}
    assert [rows[n]["cpu_share"] for n in sorted(rows)] == [0.4, 0.2, 0.4, 0.4], rows
    assert all(row["throttled_percent"] > 10 and row["memory_limit"] == 256 * 2**20 for row in rows.values()), rows
    # what a node's own sampler reads: the group it runs in, found from inside
    assert part["own_node_group"] == next(g for g in part["groups"] if g["node"] == "node3")


def test_freeze_stops_a_node_and_thaw_resumes_it(guest: dict) -> None:
    part = no_error(guest["freeze"])
    assert part["running"] > 0.5, part  # an unlimited node's loop has a whole vCPU
    assert part["freeze"] == "node1 frozen (1 processes)" and part["frozen"] and part["faults"] == {"frozen": True}
    assert part["frozen_share"] < 0.01 and part["loop_alive"], part
    assert part["thaw"] == "node1 thawed (1 processes)" and part["thawed"] and part["thawed_share"] > 0.5, part


def test_a_node_past_its_memory_cap_is_oom_killed_and_named(guest: dict) -> None:
    part = no_error(guest["oom"])
    assert part["returncode"] == -9 and part["oom_kills"] >= 1 and part["memory_limit"] == 128 * 2**20, part
    assert [(f["node"], f["cause"]) for f in part["failures"]] == [("node1", "out_of_memory")], part["failures"]
    assert "node node1 reached its memory cap (0.12 GiB)" in part["failures"][0]["detail"]
    assert "Memory cgroup out of memory" in guest["console"]  # the kernel's own word for it


def test_down_leaves_no_group_and_no_process(guest: dict) -> None:
    for name in ("shares", "freeze", "oom"):
        left = no_error(guest[name])["down"]
        assert left["leftover_groups"] == [] and left["ddl_dirs"] == [], (name, left)
        assert left["survivors"] == [] and not left["state_file"], (name, left)
    # a frozen node (node2) is thawed first, or its loop could not even die
    assert guest["shares"]["freeze_node2"] == "node2 frozen (1 processes)"
    assert guest["shares"]["down"]["stopped"] == 4
