"""Node faults, as a user would cause them on a running local cluster (``ddl cluster fault``).

* ``freeze`` / ``thaw``: the node's control group is frozen; its processes stop being scheduled but stay
  alive with their sockets open, as a hung PC would.
* ``partition`` / ``heal``: the node's network cable is pulled / plugged back (namespace clusters only).
* ``slow FACTOR``: the node's CPU share is divided by FACTOR, a straggler; ``slow 1`` restores it.

What a fault did is kept in the cluster's state (``faults`` of a node), so ``status`` shows it; ``down``
thaws every node before it kills anything (a frozen process cannot even die).
"""

from __future__ import annotations

from pathlib import Path

from ddl_commodity.cluster.local import LocalClusterState, write_state
from ddl_commodity.errors import UserInputError
from ddl_commodity.resources.cgroups import CgroupsUnavailable

ACTIONS = ("freeze", "thaw", "partition", "heal", "slow")


def apply_fault(state: LocalClusterState, state_dir: Path, node_name: str, action: str,
                factor: float | None = None) -> str:
    """Apply ``action`` to ``node_name``; returns one line saying what changed. Bad requests: exit 2."""
    node = next((n for n in state.nodes if n["name"] == node_name), None)
    if node is None:
        raise UserInputError(f"no node {node_name!r} in this cluster (nodes: "
                             f"{', '.join(n['name'] for n in state.nodes)})")
    if action not in ACTIONS:
        raise UserInputError(f"unknown fault {action!r}; one of {', '.join(ACTIONS)}")
    if (action == "slow") != (factor is not None):
        raise UserInputError("slow takes a FACTOR (e.g. `slow 3`); the other faults take none")
    if action in ("partition", "heal"):
        message = _link(node, up=action == "heal")
    else:
        group = state.groups().get(node_name)
        if group is None:
            raise CgroupsUnavailable(f"node {node_name} has no control group (none could be made when the "
                                     "cluster started): freeze and slow need cgroups")
        if action == "slow":
            message = _slow(node, group, factor)
        else:
            group.freeze(action == "freeze")
            message = f"{node_name} {'frozen' if action == 'freeze' else 'thawed'} ({len(group.pids())} processes)"
    faults = node.setdefault("faults", {})
    _record(faults, action, factor)
    write_state(state, state_dir)
    return message


def _link(node: dict, up: bool) -> str:
    from ddl_commodity.cluster.netns import set_link

    if not node.get("host_veth"):
        raise UserInputError(f"{node['name']} has no link of its own to cut: partition needs a namespace "
                             "cluster (`ddl cluster up --netns`)")
    set_link(node["host_veth"], up)
    return f"{node['name']} {'reconnected' if up else 'partitioned: its link is down'} ({node['host_veth']})"


def _slow(node: dict, group, factor: float) -> str:
    if factor < 1:
        raise UserInputError(f"slow FACTOR must be at least 1 (1 restores the node), got {factor:g}")
    base = node.get("cpus") or 1.0  # an unlimited node is slowed from one core
    share = None if factor == 1 and node.get("cpus") is None else base / factor
    group.set_cpus(share)
    return (f"{node['name']} CPU share {base:g} core -> "
            f"{'unlimited' if share is None else f'{share:.3g} core'} (x1/{factor:g})")


def _record(faults: dict, action: str, factor: float | None) -> None:
    if action in ("freeze", "thaw"):
        faults["frozen"] = action == "freeze"
    elif action in ("partition", "heal"):
        faults["partitioned"] = action == "partition"
    else:
        faults["slow"] = factor
    for key in [k for k, v in faults.items() if v is False or (k == "slow" and v == 1)]:
        del faults[key]
