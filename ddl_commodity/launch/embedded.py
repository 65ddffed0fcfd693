"""The embedded cluster: a local Spark standalone cluster started for one run and stopped after it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from ddl_commodity.cluster.local import LocalClusterState, LocalStandaloneCluster, node_resource_options
from ddl_commodity.config import RunConfig
from ddl_commodity.errors import NodeFailure
from ddl_commodity.resources.cgroups import NodeGroup


def embedded_cluster(cfg: RunConfig, run_dir: Path) -> LocalStandaloneCluster:
    """The cluster ``cfg.cluster`` asks for (workers, memory, node limits or profile), its state in the run."""
    c = cfg.cluster
    resources, _ = node_resource_options(c.profile, c.node_cpus, c.node_memory, c.master_cpus, c.master_memory)
    return LocalStandaloneCluster(workers=cfg.embedded_spark_workers, memory=c.worker_memory, host=c.host,
                                  state_dir=run_dir / "cluster", startup_timeout_s=c.startup_timeout_s, **resources)


@contextlib.contextmanager
def started(cfg: RunConfig, run_dir: Path) -> Iterator[LocalClusterState]:
    """The embedded cluster of ``cfg``, up for the block (its state in ``run_dir/cluster``); says how long it took
    to start and what its nodes are."""
    t0 = time.monotonic()
    with embedded_cluster(cfg, run_dir) as cluster:
        print(f"embedded cluster up in {time.monotonic() - t0:.1f} s: {cluster.master_url} "
              f"({cfg.embedded_spark_workers} workers{isolation_text(cluster.state)})", flush=True)
        yield cluster.state


def driver_target(stack: contextlib.ExitStack, cfg: RunConfig, run_dir: Path, group: NodeGroup | None = None
                  ) -> tuple[str, NodeGroup | None, LocalClusterState | None]:
    """``(master URL, control group, embedded cluster state)`` of a run's driver: the embedded cluster ``cfg``
    asks for, started into ``stack``, its driver in node0's group as on the master's PC; otherwise
    ``cfg.cluster.master`` and ``group``."""
    if cfg.cluster.master != "embedded":
        return cfg.cluster.master, group, None
    state = stack.enter_context(started(cfg, run_dir))
    return state.master_url, state.groups().get("node0"), state


def isolation_text(state: LocalClusterState) -> str:
    """``, each node 0.4 core and 2.0 GiB, profile thesis (d = 2.5)``, or nothing for unisolated nodes."""
    if not state.isolated:
        return ""
    node = state.nodes[-1]
    cpus = f"{node['cpus']:g} core" if node.get("cpus") else "all cores"
    memory = f"{node['memory'] / 2**30:.1f} GiB" if node.get("memory") else "no memory cap"
    profile = f", profile {state.profile} (d = {state.dilation:g})" if state.profile else ""
    return f", each node {cpus} and {memory}{profile}"


def out_of_memory_failures(state: LocalClusterState | None) -> list[NodeFailure]:
    """Every node whose memory cap made the kernel kill a process; read before the cluster's groups go."""
    if state is None:
        return []
    failures = []
    for name, group in state.groups().items():
        try:
            usage = group.usage()
        except OSError:
            continue
        if usage.oom_kills and usage.memory_limit:
            failures.append(NodeFailure(name, "out_of_memory", (
                f"node {name} reached its memory cap ({usage.memory_limit / 2**30:.2f} GiB): the kernel's OOM "
                f"killer ended {usage.oom_kills} process(es) there (out of memory)")))
    return failures
