"""Node resources on a pure cgroup v2 host, checked inside the VM of :mod:`tests.vm.qemu`; prints one JSON object.

The node groups come from the code ``ddl cluster up`` runs (``LocalStandaloneCluster``'s node table, groups and
CPU shares), the faults from ``ddl cluster fault``'s :func:`apply_fault`, tear-down from ``ddl cluster down``'s
:func:`stop_recorded_cluster`, the OOM fault from a run's ``oom`` fault and its naming from a run's
:func:`out_of_memory_failures`. Only the Spark daemons are left out, to keep the emulated guest's work small:
each node runs a bounded busy loop instead, started into the node's group the way a daemon is
(:func:`enter_command`, with the cluster's process tags). Every check reports an ``error`` instead of raising,
so one failure leaves the other checks' results readable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path

from ddl_commodity.cluster.faults import apply_fault
from ddl_commodity.cluster.local import (
    CLUSTER_TAG,
    NODE_TAG,
    LocalClusterState,
    LocalStandaloneCluster,
    node_status,
    read_state,
    stop_recorded_cluster,
)
from ddl_commodity.launch.embedded import out_of_memory_failures
from ddl_commodity.resources import cgroups

#: A CPU-bound loop that ends by itself after 10 minutes (tear-down kills it long before).
BUSY_LOOP = [sys.executable, "-S", "-c",
             "import time\nend = time.monotonic() + 600\nwhile time.monotonic() < end: pass"]
OWN_GROUP = [sys.executable, "-c", "import json\nfrom ddl_commodity.resources.cgroups import own_node_group\n"
                                   "g = own_node_group()\nprint(json.dumps(g and g.to_dict()))"]
EXHAUST = [sys.executable, "-c", "from ddl_commodity.engines.data_parallel_node import exhaust_memory\n"
                                 "exhaust_memory()"]


def up(state_dir: Path, nodes: int, limits: cgroups.NodeLimits) -> LocalClusterState:
    """The node groups of ``ddl cluster up --nodes N`` with ``limits``, recorded in ``state_dir`` as ``up`` does
    (``LocalStandaloneCluster.start`` up to its daemons)."""
    cluster = LocalStandaloneCluster(workers=nodes - 1, limits=limits, state_dir=state_dir)
    cluster_id = uuid.uuid4().hex[:12]
    state_dir.mkdir(parents=True, exist_ok=True)
    cluster.state = LocalClusterState(
        cluster_id=cluster_id, host="127.0.0.1", master_url="spark://127.0.0.1:7077",
        master_ui="http://127.0.0.1:8080", workers=nodes - 1, cores=1, memory="1g", started_at=time.time(),
        log_dir=str(state_dir), nodes=cluster._plan_nodes(cluster_id))
    cluster._make_groups()
    return cluster.state


def apply_shares(state_dir: Path) -> None:
    """The CPU shares ``up`` applies once its daemons are up."""
    cluster = LocalStandaloneCluster(workers=1, state_dir=state_dir)
    cluster.state = read_state(state_dir)
    cluster._apply_cpu_shares()


def start_in_node(state: LocalClusterState, node: str, argv: list[str], **popen) -> subprocess.Popen:
    """``argv`` started into ``node``'s group as its daemon would be, carrying the cluster's tags."""
    env = {**os.environ, CLUSTER_TAG: state.cluster_id, NODE_TAG: node}
    return subprocess.Popen(cgroups.enter_command(state.groups()[node], argv), env=env, start_new_session=True,
                            stdin=subprocess.DEVNULL, **popen)


def start_loops(state: LocalClusterState, nodes: list[str]) -> dict[str, subprocess.Popen]:
    """A busy loop in each of ``nodes``, returned once every loop is in its group."""
    groups = state.groups()
    loops = {name: start_in_node(state, name, BUSY_LOOP) for name in nodes}
    deadline = time.monotonic() + 120
    while not all(p.pid in groups[n].pids() for n, p in loops.items()):
        if time.monotonic() > deadline:
            raise RuntimeError("the loops never joined their nodes")
        time.sleep(0.1)
    time.sleep(2.0)  # past the interpreters' start
    return loops


def measured_shares(groups: dict[str, cgroups.NodeGroup], seconds: float) -> dict[str, float]:
    """Cores each group used over ``seconds``, from its own CPU accounting (``cpu.stat``)."""
    before = {name: g.usage() for name, g in groups.items()}
    time.sleep(seconds)
    after = {name: g.usage() for name, g in groups.items()}
    return {name: (after[name].cpu_seconds - before[name].cpu_seconds) / (after[name].time - before[name].time)
            for name in groups}


def down(state_dir: Path, loops: dict[str, subprocess.Popen]) -> dict:
    """``ddl cluster down``, and what it left: groups, live loops, the state file."""
    stopped = stop_recorded_cluster(state_dir)
    survivors = []
    for name, p in loops.items():
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            survivors.append(name)
            p.kill()
    return {"stopped": stopped, "leftover_groups": [str(p) for p in cgroups.leftover_groups()],
            "ddl_dirs": sorted(p.name for p in cgroups.CGROUP_ROOT.glob("ddl-*")), "survivors": survivors,
            "state_file": (state_dir / "cluster.json").exists()}


def check_shares(work: Path) -> dict:
    """`up --nodes 4 --node-cpus 0.4 --node-memory 256m`, a loop per node; `slow 2` on node1; node2 frozen
    when `down` runs."""
    state_dir = work / "shares"
    state = up(state_dir, 4, cgroups.NodeLimits(cpus=0.4, memory=256 * 2**20))
    loops = {}
    try:
        # What a node's own sampler reads: the group it runs in, found from inside (asked before the loops
        # leave the VM's two vCPUs 0.4 of one for everything else).
        own = start_in_node(state, "node3", OWN_GROUP, stdout=subprocess.PIPE, text=True)
        own_group = json.loads(own.communicate(timeout=120)[0])
        loops = start_loops(state, [n["name"] for n in state.nodes])
        apply_shares(state_dir)
        state = read_state(state_dir)
        groups = state.groups()
        time.sleep(1.0)
        out = {"groups": state.cgroups, "shares": measured_shares(groups, 5.0),
               "files": {name: (Path(groups["node1"].dirs["unified"]) / name).read_text().strip()
                         for name in ("cpu.max", "memory.max", "memory.swap.max")}}
        out["slow"] = apply_fault(state, state_dir, "node1", "slow", 2.0)
        time.sleep(1.0)
        out["slowed_shares"] = measured_shares(groups, 5.0)
        out["status"] = [{k: row.get(k) for k in ("name", "cpu_share", "throttled_percent", "memory_limit",
                                                   "frozen")} for row in node_status(read_state(state_dir), 1.0)]
        out["own_node_group"] = own_group
        out["freeze_node2"] = apply_fault(read_state(state_dir), state_dir, "node2", "freeze")
    finally:
        out_down = down(state_dir, loops)
    return {**out, "down": out_down}


def check_freeze(work: Path) -> dict:
    """`up --nodes 2` without limits (groups still made), a loop on node1, `fault node1 freeze`, then `thaw`."""
    state_dir = work / "freeze"
    state = up(state_dir, 2, cgroups.NodeLimits())
    loops = {}
    try:
        loops = start_loops(state, ["node1"])
        group = state.groups()["node1"]
        out = {"running": measured_shares({"node1": group}, 2.0)["node1"]}
        out["freeze"] = apply_fault(read_state(state_dir), state_dir, "node1", "freeze")
        out["frozen"] = group.frozen()
        out["faults"] = read_state(state_dir).nodes[1].get("faults")
        time.sleep(0.5)
        out["frozen_share"] = measured_shares({"node1": group}, 2.0)["node1"]
        out["loop_alive"] = loops["node1"].poll() is None
        out["thaw"] = apply_fault(read_state(state_dir), state_dir, "node1", "thaw")
        out["thawed"] = not group.frozen()
        time.sleep(0.5)
        out["thawed_share"] = measured_shares({"node1": group}, 2.0)["node1"]
    finally:
        out_down = down(state_dir, loops)
    return {**out, "down": out_down}


def check_oom(work: Path) -> dict:
    """`up --nodes 2 --node-memory 128m`; the `oom` fault of a run on node1; what a run reports."""
    state_dir = work / "oom"
    state = up(state_dir, 2, cgroups.NodeLimits(memory=128 * 2**20))
    out = {}
    try:
        hog = start_in_node(state, "node1", EXHAUST, stderr=subprocess.PIPE, text=True)
        _, stderr = hog.communicate(timeout=300)
        usage = state.groups()["node1"].usage()
        out = {"returncode": hog.returncode, "stderr": stderr[-2000:], "oom_kills": usage.oom_kills,
               "memory_limit": usage.memory_limit,
               "failures": [vars(f) for f in out_of_memory_failures(read_state(state_dir))]}
    finally:
        out_down = down(state_dir, {})
    return {**out, "down": out_down}


def guarded(check: Callable[[Path], dict], work: Path) -> dict:
    start = time.monotonic()
    try:
        out = check(work)
    except Exception:
        out = {"error": traceback.format_exc()}
    return {**out, "seconds": round(time.monotonic() - start, 1)}


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def main() -> None:
    """Every check, and the guest's uptime once this module is imported and when the checks are done."""
    work = Path("/tmp/ddl-vm-checks")
    layout = cgroups.host_layout()
    out = {"layout": layout and layout.version, "unavailable": cgroups.unavailable_reason(),
           "mountinfo": [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if "cgroup" in line],
           "uptime_imported": uptime()}
    for name, check in (("shares", check_shares), ("freeze", check_freeze), ("oom", check_oom)):
        out[name] = guarded(check, work)
    out["uptime_done"] = uptime()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
