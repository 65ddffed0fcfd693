"""The embedded default: a Spark standalone cluster (1 master + N workers) started on this machine.

The pip ``pyspark`` wheel ships ``bin/spark-class`` but no ``sbin/start-*.sh``, so the daemons are started
directly. Every process we start carries ``DDL_CLUSTER_ID`` in its environment; Spark executors, PySpark
daemons and TFoS background processes inherit it. Tear-down kills by that tag rather than by process tree,
because PySpark's daemon moves itself into its own process group and orphans get reparented.

State lives in ``<state_dir>/cluster.json`` so ``ddl cluster status`` / ``ddl cluster down`` work from
another process and after a crash. It lists every node (``node0`` is the master, where the driver runs;
``node1..`` are the workers) with its address and, with ``netns=True``, its network namespace and
interface (see :mod:`ddl_commodity.cluster.netns`), so other code can count or run things per node.
Every process also carries ``DDL_NODE`` so CPU and memory can be attributed to its node.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from ddl_commodity.errors import DdlError, UserInputError
from ddl_commodity.resources.cgroups import (
    CgroupsUnavailable,
    NodeGroup,
    NodeLimits,
    create_node_groups,
    enter_command,
    hierarchy,
    remove_abandoned_groups,
    remove_groups,
)
from ddl_commodity.resources.profiles import ResolvedProfile, cluster_limits
from ddl_commodity.runs import write_json_atomic
from ddl_commodity.runtime.feed import remove_files_of
from ddl_commodity.runtime.jvm import (
    SMALL_JVM_OPTIONS,
    daemon_command,
    daemon_environment,
    java_binary,
    jvm_options,
    spark_home,
)

CLUSTER_TAG = "DDL_CLUSTER_ID"
NODE_TAG = "DDL_NODE"
DEFAULT_STATE_DIR = Path(".cluster")
#: Not 15 s: on a loaded 2-core machine a master can hear nothing of its new workers for 15 s, drop them all
#: and fail a run at its first job; 30 s is still above the 15 s heartbeat window, so a hung node is told by
#: its own silence first.
WORKER_TIMEOUT_S = 30


class ClusterError(DdlError):
    """The local cluster could not be started, or is in a state that forbids the request."""


class ClusterAlreadyRunning(UserInputError):
    """``up`` was asked for while a cluster recorded in the same state directory is alive."""


class NetnsUnavailable(ClusterError):
    """Namespace nodes cannot be made here (not root, no iproute2, no permission); the reason says which."""


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


_STARTED = re.compile(r"Successfully started service '(\w+)' on port (\d+)")


def started_ports(log: Path) -> dict[str, int]:
    """Port per service (``sparkMaster``, ``MasterUI``, ``WorkerUI``, ...) as a daemon's log says it bound it.

    A port chosen free can be taken by another process before the daemon binds it; Spark then takes the
    next one, and a start that waited on the port chosen would wait out its whole timeout."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return {}
    return {name: int(port) for name, port in _STARTED.findall(text)}


@dataclass
class LocalClusterState:
    """What ``cluster.json`` records about a started cluster."""

    cluster_id: str
    host: str
    master_url: str
    master_ui: str
    workers: int
    cores: int
    memory: str
    pids: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0
    log_dir: str = ""
    #: One entry per node: name, role (master/worker), address, spark (pid key), webui_port and, for
    #: namespace nodes, namespace, interface and host_veth (see :class:`netns.NetnsNode`).
    nodes: list[dict] = field(default_factory=list)
    netns: bool = False
    bandwidth: str | None = None
    latency: str | None = None
    #: One :class:`~ddl_commodity.resources.cgroups.NodeGroup` dict per node (empty: cgroups unavailable).
    cgroups: list[dict] = field(default_factory=list)
    #: The profile the cluster was started from (``configs/clusters/<name>.yaml``) and its time dilation.
    profile: str | None = None
    dilation: float | None = None

    def groups(self) -> dict[str, NodeGroup]:
        """``{node name: its control group}``."""
        return {g["node"]: NodeGroup.from_dict(g) for g in self.cgroups}

    @property
    def isolated(self) -> bool:
        return any(n.get("cpus") is not None or n.get("memory") is not None for n in self.nodes)

    @classmethod
    def from_json(cls, text: str) -> LocalClusterState:
        return cls(**json.loads(text))


def tagged_processes(cluster_id: str | None = None, prefix: bool = False) -> list[psutil.Process]:
    """Processes started for a local cluster (any cluster when ``cluster_id`` is None).

    ``prefix``: match clusters whose id starts with ``cluster_id`` (namespace names hold only a short id).
    """
    return [p for p, _ in _tagged(cluster_id, prefix)]


def _tagged(cluster_id: str | None, prefix: bool = False) -> list[tuple[psutil.Process, dict[str, str]]]:
    found = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        try:
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        tag = env.get(CLUSTER_TAG)
        if tag and (cluster_id is None or tag == cluster_id or (prefix and tag.startswith(cluster_id))):
            found.append((proc, env))
    return found


def node_processes(cluster_id: str) -> dict[str, list[psutil.Process]]:
    """``{node name: processes}`` of a cluster, by the ``DDL_NODE`` tag its processes inherit."""
    by_node: dict[str, list[psutil.Process]] = {}
    for proc, env in _tagged(cluster_id):
        by_node.setdefault(env.get(NODE_TAG, "?"), []).append(proc)
    return by_node


def _processes(pids: list[int]) -> list[psutil.Process]:
    found = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            found.append(psutil.Process(pid))
    return found


def kill_processes(procs: list[psutil.Process], grace_s: float = 5.0) -> int:
    """SIGTERM, wait up to ``grace_s``, then SIGKILL what is left. Returns how many were signalled."""
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=grace_s)
    return len(procs)


def node_resource_options(profile: str | None, node_cpus: float | None = None, node_memory: str | None = None,
                          master_cpus: float | None = None, master_memory: str | None = None,
                          ) -> tuple[dict, ResolvedProfile | None]:
    """:class:`LocalStandaloneCluster`'s node-resource arguments (limits, master limits, profile, d) for a
    profile with per-node options over it, and the resolved profile (``None`` without one)."""
    worker, master, resolved = cluster_limits(profile, node_cpus, node_memory, master_cpus, master_memory)
    return {"limits": worker, "master_limits": master, "profile": resolved.name if resolved else None,
            "dilation": resolved.dilation if resolved else None}, resolved


class LocalStandaloneCluster:
    """Start, inspect and stop a Spark standalone cluster of ``workers`` 1-core workers on one machine.

    Use as a context manager so the cluster goes away whatever happens::

        with LocalStandaloneCluster(workers=3) as cluster:
            subprocess.run(["spark-submit", "--master", cluster.master_url, ...])

    ``netns=True`` puts the master and each worker into its own network namespace (node0 = master,
    node<i> = worker i-1) behind a bridge, optionally shaped to ``bandwidth``/``latency`` (tc syntax); see
    :mod:`ddl_commodity.cluster.netns`. ``host`` is then ignored: every node listens on its own address.

    ``limits`` (workers) and ``master_limits`` (node0; default: the workers') give each node a CPU share and a
    memory cap in its own control group (:mod:`ddl_commodity.resources.cgroups`); asked for where no writable
    cgroup exists, :class:`~ddl_commodity.resources.cgroups.CgroupsUnavailable` (exit 2). Without limits the
    nodes still get (unlimited) groups where possible, for per-node accounting and node faults.
    ``worker_timeout_s``: how long the master waits for a silent worker before it drops it.
    """

    def __init__(
        self,
        workers: int,
        cores: int = 1,
        memory: str = "2g",
        host: str = "127.0.0.1",
        state_dir: Path = DEFAULT_STATE_DIR,
        startup_timeout_s: float = 120.0,
        netns: bool = False,
        bandwidth: str | None = None,
        latency: str | None = None,
        limits: NodeLimits | None = None,
        master_limits: NodeLimits | None = None,
        profile: str | None = None,
        dilation: float | None = None,
        worker_timeout_s: float = WORKER_TIMEOUT_S,
    ) -> None:
        if workers < 1:
            raise ValueError("a cluster needs at least one worker")
        if (bandwidth or latency) and not netns:
            raise UserInputError("--bandwidth/--latency shape namespace links: they need --netns")
        self.workers = workers
        self.cores = cores
        self.memory = memory
        self.host = host
        self.state_dir = Path(state_dir)
        self.startup_timeout_s = startup_timeout_s
        self.netns = netns
        self.bandwidth = bandwidth
        self.latency = latency
        self.limits = limits or NodeLimits()
        self.master_limits = self.limits if master_limits is None else master_limits
        self._java_options = SMALL_JVM_OPTIONS  # plus the class-data archive, once start() knows Java is there
        self.profile = profile
        self.worker_timeout_s = worker_timeout_s
        self.dilation = dilation
        self.state: LocalClusterState | None = None

    @property
    def state_file(self) -> Path:
        return self.state_dir / "cluster.json"

    @property
    def master_url(self) -> str:
        if self.state is None:
            raise ClusterError("the cluster is not started")
        return self.state.master_url

    def __enter__(self) -> LocalStandaloneCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _env(self, cluster_id: str, log_dir: Path, node: dict | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                CLUSTER_TAG: cluster_id,
                "SPARK_HOME": str(spark_home()),
                "SPARK_LOCAL_IP": node["address"] if node else self.host,
                "SPARK_LOG_DIR": str(log_dir),
                "PYSPARK_PYTHON": sys.executable,
                # A hung or cut-off node is given up after worker_timeout_s (30 s by default), not Spark's 60
                # (checked every timeout, so up to 120 s): until then its executor's tasks are neither re-run
                # elsewhere nor cancelled.
                "SPARK_MASTER_OPTS": f"-Dspark.worker.timeout={self.worker_timeout_s:.0f}",
                "SPARK_DAEMON_JAVA_OPTS": self._java_options,
            }
        )
        if node:
            env[NODE_TAG] = node["name"]
            if node.get("cpus") is not None:  # TensorFlow sizes its thread pools by the node's share
                threads = str(max(1, math.ceil(node["cpus"])))
                env.update(DDL_NODE_CPUS=str(node["cpus"]), TF_NUM_INTRAOP_THREADS=threads,
                           TF_NUM_INTEROP_THREADS=threads, OMP_NUM_THREADS=threads)
        return env

    def _spawn(self, name: str, args: list[str], env: dict[str, str], log_dir: Path,
               node: dict) -> int:
        from ddl_commodity.cluster.netns import node_command

        log = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            # `ip netns exec` enters the namespace and execs the command: the pid stays the daemon's.
            proc = subprocess.Popen(
                # The group first: `ip netns exec` remounts /sys, hiding the cgroup files from what it runs.
                enter_command(self._group(node), node_command(node.get("namespace"), daemon_command(args, env))),
                env=daemon_environment(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=str(log_dir),
            )
        finally:
            log.close()
        return proc.pid

    def start(self) -> LocalClusterState:
        """Start master and workers and wait until every worker is ALIVE in the master's view.

        Refuses (:class:`ClusterAlreadyRunning`, exit code 2) while the cluster recorded in the same state
        directory, or with ``netns`` any other namespace cluster (they share the 10.77.0.0/24 bridge
        subnet), is alive; removes the leftovers of crashed ones first.
        """
        self._clear_leftovers()
        if self.limits.isolated or self.master_limits.isolated:
            try:  # refused before anything is written
                hierarchy()
            except CgroupsUnavailable as err:
                raise CgroupsUnavailable(f"node limits asked for, but {err}") from None
        if java_binary() is None:
            raise ClusterError("no Java runtime found (java on PATH or JAVA_HOME); run scripts/setup.sh")
        self._java_options = jvm_options()
        cluster_id = uuid.uuid4().hex[:12]
        nodes = self._plan_nodes(cluster_id)
        log_dir = (self.state_dir / f"logs-{cluster_id}").resolve()
        log_dir.mkdir(parents=True, exist_ok=True)
        if self.netns:  # nothing else listens on a fresh namespace's address
            master_port, ui_port = 7077, 8080
        else:
            master_port, ui_port = free_port(self.host), free_port(self.host)
        address = nodes[0]["address"]
        self.state = LocalClusterState(
            cluster_id=cluster_id, host=address, master_url=f"spark://{address}:{master_port}",
            master_ui=f"http://{address}:{ui_port}", workers=self.workers, cores=self.cores, memory=self.memory,
            started_at=time.time(), log_dir=str(log_dir), nodes=nodes, netns=self.netns, bandwidth=self.bandwidth,
            latency=self.latency, profile=self.profile, dilation=self.dilation,
        )
        self._write_state()
        try:
            self._make_groups()
            with self._starting(cluster_id):
                if self.netns:
                    from ddl_commodity.cluster.netns import create_network

                    created = create_network(cluster_id, len(nodes), self.bandwidth, self.latency)
                    for node, made in zip(nodes, created, strict=True):
                        node.update(namespace=made.namespace, interface=made.interface, host_veth=made.host_veth)
                    self._write_state()
                self._start_master(master_port, ui_port)
                self._start_workers()
            self._apply_cpu_shares()
        except BaseException:
            self.stop()
            raise
        return self.state

    def _starting(self, cluster_id: str):
        if not self.netns:
            return contextlib.nullcontext()
        from ddl_commodity.cluster.netns import starting

        return starting(cluster_id)

    def _group(self, node: dict) -> NodeGroup | None:
        return self.state.groups().get(node["name"]) if self.state else None

    def _make_groups(self) -> None:
        """One control group per node: required (and limited) when limits were asked for, else best effort."""
        state = self.state
        limits = {n["name"]: self.master_limits if n["role"] == "master" else self.limits for n in state.nodes}
        for node in state.nodes:
            lim = limits[node["name"]]
            node.update(cpus=lim.cpus, memory=lim.memory)
        try:  # CPU shares come once the daemons are up: a JVM's start is not what a profile emulates
            groups = create_node_groups(state.cluster_id, {k: NodeLimits(memory=v.memory) for k, v in limits.items()})
        except (CgroupsUnavailable, OSError) as err:
            if any(lim.isolated for lim in limits.values()):
                raise CgroupsUnavailable(f"node limits asked for, but {err}") from None
            return
        state.cgroups = [g.to_dict() for g in groups]
        self._write_state()

    def _apply_cpu_shares(self) -> None:
        groups = self.state.groups()
        for node in self.state.nodes:
            if node.get("cpus") is not None:
                groups[node["name"]].set_cpus(node["cpus"])

    def _clear_leftovers(self) -> None:
        """Refuse a live cluster in the same state directory; remove what a crashed one left."""
        existing = read_state(self.state_dir)
        if existing is None:
            return
        if tagged_processes(existing.cluster_id):
            raise ClusterAlreadyRunning(
                f"a local cluster is already running ({existing.master_url}, state in {self.state_file}); "
                f"stop it with `ddl cluster down` or use it with `cluster.master: {existing.master_url}`"
            )
        if existing.netns:
            from ddl_commodity.cluster.netns import destroy_network

            destroy_network(existing.cluster_id)
        with contextlib.suppress(OSError):
            remove_groups(existing.groups().values())
        self.state_file.unlink(missing_ok=True)  # leftover of a crashed run: nothing alive

    def _start_master(self, port: int, ui_port: int) -> None:
        state = self.state
        master, log_dir = state.nodes[0], Path(state.log_dir)
        state.pids["master"] = self._spawn(
            "master",
            ["org.apache.spark.deploy.master.Master", "--host", master["address"], "--port", str(port),
             "--webui-port", str(ui_port)],
            self._env(state.cluster_id, log_dir, master), log_dir, master,
        )
        master["webui_port"] = ui_port
        self._write_state()
        self._wait_for_master()

    def _start_workers(self) -> None:
        state = self.state
        log_dir = Path(state.log_dir)
        for i, node in enumerate(state.nodes[1:]):
            worker_dir = log_dir / f"worker-{i}"
            worker_dir.mkdir(exist_ok=True)
            node["webui_port"] = 8081 if self.netns else free_port(self.host)
            state.pids[f"worker-{i}"] = self._spawn(
                f"worker-{i}",
                ["org.apache.spark.deploy.worker.Worker", "--host", node["address"], "--cores", str(self.cores),
                 "--memory", self.memory, "--webui-port", str(node["webui_port"]), "--work-dir", str(worker_dir),
                 state.master_url],
                self._env(state.cluster_id, log_dir, node), log_dir, node,
            )
        self._write_state()
        self._wait_for_workers()

    def _plan_nodes(self, cluster_id: str) -> list[dict]:
        """The node table of cluster.json: node0 runs the master (and the driver), node<i> worker i-1."""
        if self.netns:
            from ddl_commodity.cluster.netns import (
                destroy_network,
                leftover_cluster_ids,
                netns_unavailable_reason,
                plan_nodes,
                validate_shaping,
            )

            validate_shaping(self.bandwidth, self.latency)
            reason = netns_unavailable_reason()
            if reason is not None:
                raise NetnsUnavailable(reason)
            for sid in leftover_cluster_ids():
                if tagged_processes(sid, prefix=True):
                    raise ClusterAlreadyRunning(
                        f"a namespace cluster ({sid}) is running; stop it with `ddl cluster down` first "
                        "(namespace clusters share the 10.77.0.0/24 bridge subnet)"
                    )
                destroy_network(sid)  # leftovers of a crash: no process left
            planned = plan_nodes(cluster_id, self.workers + 1)
            addresses = [(n.name, n.address) for n in planned]
        else:
            addresses = [(f"node{i}", self.host) for i in range(self.workers + 1)]
        return [
            {"name": name, "role": "master" if i == 0 else "worker", "address": address,
             "spark": "master" if i == 0 else f"worker-{i - 1}"}
            for i, (name, address) in enumerate(addresses)
        ]

    def _write_state(self) -> None:
        assert self.state is not None
        write_state(self.state, self.state_dir)

    def master_status(self) -> dict:
        """The master's JSON status page (workers, their state, running applications)."""
        assert self.state is not None
        return master_status(self.state)

    def _deadline_loop(self, what: str):
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            yield
            time.sleep(0.5)
        raise ClusterError(f"{what} within {self.startup_timeout_s:.0f} s; logs in {self.state.log_dir}")

    def _wait_for_master(self) -> None:
        for _ in self._deadline_loop("the Spark master did not come up"):
            self._check_alive("master")
            self._follow_master_ports()
            with contextlib.suppress(OSError, ValueError):
                self.master_status()
                return

    def _follow_master_ports(self) -> None:
        """The master's URL and UI at the ports it bound (:func:`started_ports`)."""
        state, master = self.state, self.state.nodes[0]
        ports = started_ports(Path(state.log_dir) / "master.log")
        url = f"spark://{master['address']}:{ports['sparkMaster']}" if "sparkMaster" in ports else state.master_url
        ui = ports.get("MasterUI", master["webui_port"])
        if (url, ui) != (state.master_url, master["webui_port"]):
            state.master_url, state.master_ui, master["webui_port"] = url, f"http://{master['address']}:{ui}", ui
            self._write_state()

    def _follow_worker_ui_ports(self) -> None:
        """Each worker's UI at the port it bound: the master names a worker by that address."""
        changed = False
        for i, node in enumerate(self.state.nodes[1:]):
            port = started_ports(Path(self.state.log_dir) / f"worker-{i}.log").get("WorkerUI", node["webui_port"])
            changed |= port != node["webui_port"]
            node["webui_port"] = port
        if changed:
            self._write_state()

    def _wait_for_workers(self) -> None:
        for _ in self._deadline_loop(f"{self.workers} Spark workers did not register"):
            for name in self.state.pids:
                self._check_alive(name)
            self._follow_worker_ui_ports()
            with contextlib.suppress(OSError, ValueError):
                if alive_worker_count(self.master_status()) >= self.workers:
                    return

    def _check_alive(self, name: str) -> None:
        pid = self.state.pids[name]
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            log = Path(self.state.log_dir) / f"{name}.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise ClusterError(f"Spark {name} exited during start-up; last log lines:\n{tail}")

    def stop(self) -> int:
        """Kill every process of this cluster, remove its namespaces and links; idempotent.

        Returns how many processes were stopped.
        """
        state = self.state or read_state(self.state_dir)
        if state is None:
            return 0
        groups = list(state.groups().values())
        for g in groups:  # a frozen process cannot even die: thaw first
            with contextlib.suppress(OSError):
                g.freeze(False)
        tagged = tagged_processes(state.cluster_id)
        n = kill_processes(tagged)
        # Untagged members too (a driver started inside node0's group): a group holding a process stays.
        members = [p for g in groups for p in _processes(g.pids())]
        n += kill_processes(members)
        remove_files_of({p.pid for p in tagged + members})  # the shared memory of feeders killed mid-feed
        with contextlib.suppress(OSError):
            remove_groups(groups)
        if state.netns:
            from ddl_commodity.cluster.netns import destroy_network

            destroy_network(state.cluster_id)
        self.state_file.unlink(missing_ok=True)
        self.state = None
        return n


def write_state(state: LocalClusterState, state_dir: Path = DEFAULT_STATE_DIR) -> None:
    """Write ``<state_dir>/cluster.json`` atomically."""
    write_json_atomic(Path(state_dir) / "cluster.json", asdict(state))


def read_state(state_dir: Path = DEFAULT_STATE_DIR) -> LocalClusterState | None:
    path = Path(state_dir) / "cluster.json"
    if not path.is_file():
        return None
    try:
        return LocalClusterState.from_json(path.read_text())
    except (ValueError, TypeError):
        return None


def master_status(state: LocalClusterState, timeout_s: float = 2.0) -> dict:
    with urllib.request.urlopen(f"{state.master_ui}/json/", timeout=timeout_s) as resp:
        return json.loads(resp.read())


def alive_worker_count(status: dict) -> int:
    return sum(1 for w in status.get("workers", []) if w.get("state") == "ALIVE")


def stop_recorded_cluster(state_dir: Path = DEFAULT_STATE_DIR) -> int:
    """``ddl cluster down``: stop the cluster recorded in ``state_dir``, orphans included. Idempotent.

    Also removes the namespaces and links of any crashed namespace cluster (one with no process left),
    even when its state file is gone, and the control groups of crashed clusters.
    """
    n = LocalStandaloneCluster(workers=1, state_dir=state_dir).stop()
    remove_netns_leftovers()
    remove_abandoned_groups()
    return n


def remove_netns_leftovers() -> list[str]:
    """Remove the namespaces/links of every ``ddl`` namespace cluster that has no live process."""
    from ddl_commodity.cluster.netns import destroy_network, ip_binary, is_starting, leftover_cluster_ids

    if ip_binary() is None or os.geteuid() != 0:
        return []
    removed = []
    for sid in leftover_cluster_ids():
        if not tagged_processes(sid, prefix=True) and not is_starting(sid):
            removed += destroy_network(sid)
    return removed


def node_status(state: LocalClusterState, sample_s: float = 1.0) -> list[dict]:
    """Per node, live: address, namespace, Spark state, CPU % (summed over its processes, 100 = one core),
    resident memory, and for namespace nodes the interface byte counters and rates over ``sample_s``.

    A capped node spends its quota in bursts, one per 100 ms CFS period, so a window catches up to one
    period's quota more or less than its share: +-10 % of the share over 1 s, and twice that over 0.5 s.
    """
    from ddl_commodity.cluster.netns import counters_snapshot

    try:
        spark = master_status(state)
    except (OSError, ValueError):
        spark = None
    spark_state: dict[str, str] = {}
    if spark is not None:
        spark_state[state.nodes[0]["name"] if state.nodes else "node0"] = spark.get("status", "?")
        by_ui = {f"{n['address']}:{n.get('webui_port')}": n["name"] for n in state.nodes[1:]}
        for w in spark.get("workers", []):
            name = by_ui.get(str(w.get("webuiaddress", "")).split("//", 1)[-1])
            # A re-registered worker appears twice (DEAD, then ALIVE): ALIVE wins.
            if name is not None and spark_state.get(name) != "ALIVE":
                spark_state[name] = w.get("state", "?")
    procs = node_processes(state.cluster_id)
    for plist in procs.values():
        for p in plist:
            with contextlib.suppress(psutil.Error):
                p.cpu_percent(None)
    groups = state.groups()
    counters0 = counters_snapshot(state.nodes) if state.netns else {}
    usage0 = _group_counters(groups)
    time.sleep(sample_s)
    counters1 = counters_snapshot(state.nodes) if state.netns else {}
    usage1 = _group_counters(groups)
    rows = []
    for node in state.nodes:
        name = node["name"]
        cpu = rss = 0.0
        for p in procs.get(name, []):
            with contextlib.suppress(psutil.Error):
                cpu += p.cpu_percent(None)
                rss += p.memory_info().rss
        row = {"name": name, "role": node["role"], "address": node["address"],
               "namespace": node.get("namespace"), "spark_state": spark_state.get(name, "DOWN"),
               "processes": len(procs.get(name, [])), "cpu_percent": cpu, "rss_bytes": int(rss),
               "faults": dict(node.get("faults") or {})}
        if name in usage1 and name in usage0:
            row.update(_group_row(groups[name], usage0[name], usage1[name]))
        if name in counters1:
            (rx0, tx0), (rx1, tx1) = counters0[name], counters1[name]
            row.update(rx_bytes=rx1, tx_bytes=tx1, rx_rate=(rx1 - rx0) / sample_s, tx_rate=(tx1 - tx0) / sample_s)
        rows.append(row)
    return rows


def _group_counters(groups: dict[str, NodeGroup]) -> dict[str, tuple]:
    """``{node: (usage, cumulative run-queue delay of its threads)}``, for the groups that can be read."""
    from ddl_commodity.resources.cgroups import run_delay_seconds

    out = {}
    for name, g in groups.items():
        with contextlib.suppress(OSError, ValueError):
            out[name] = (g.usage(), run_delay_seconds(g.pids()))
    return out


def _group_row(group: NodeGroup, before: tuple, after: tuple) -> dict:
    """A node's share, CPU % of that share, CPU wait % (0-100, :mod:`ddl_commodity.monitor.cpu_wait`), run-queue
    delay % (summed over its threads), throttled % and memory against its cap, between two readings."""
    from ddl_commodity.monitor.cpu_wait import cpu_wait_percent

    (u0, d0), (u1, d1) = before, after
    dt = max(u1.time - u0.time, 1e-6)
    share = None
    with contextlib.suppress(OSError, ValueError):
        share = group.cpus()
    # A thread born between the readings waited only since its start, as the group's CPU counter counts it.
    waited = sum(v - d0.get(tid, 0.0) for tid, v in d1.items())
    used = u1.cpu_seconds - u0.cpu_seconds
    return {"cpu_share": share, "cpu_percent_of_share": 100.0 * used / dt / (share or 1.0),
            "cpu_wait_percent": cpu_wait_percent(waited, used, dt, share),
            "run_queue_delay_percent": 100.0 * waited / dt,
            "throttled_percent": 100.0 * (u1.throttled_seconds - u0.throttled_seconds) / dt,
            "memory_bytes": u1.memory_bytes, "memory_limit": u1.memory_limit, "frozen": group.frozen()}
