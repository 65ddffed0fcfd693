"""Network-namespace nodes: one Linux network namespace per cluster node, joined by a bridge.

Why: on one machine every Spark node talks over loopback, so "how many bytes did node 3 send" has no
answer and the link cannot be slowed down. Here each node gets its own namespace with a veth pair whose
outer end sits on a bridge in the root namespace::

    root namespace:  ddlbr<id> 10.77.0.1/24  ── ddl<id>n0 ... ddl<id>n4   (host ends of the veth pairs)
    node i:          namespace ddl-<id>-node<i>, eth0 = 10.77.0.(10+i)/24, default route via 10.77.0.1

so the node's traffic is the exact byte counter of its ``eth0``, and ``tc`` (``tbf`` for the rate,
``netem`` for the delay) on both ends of the veth shapes both directions of the node's link. The default
route matters: TFoS finds a node's own address with a UDP route lookup toward a public address, which
fails without one. No packet may leave the machine: whatever ``ip_forward`` says, two ``ip rule``
entries let packets from the bridge be routed only within the bridge's subnet (packets for the root
namespace's own addresses are delivered by the ``local`` table before any rule).

Every object carries the prefix ``ddl`` and the first 6 hex digits of the cluster id, so the leftovers of
a crashed cluster can be found (:func:`leftover_cluster_ids`) and removed (:func:`destroy_network`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ddl_commodity.errors import DdlError, UserInputError
from ddl_commodity.runs import write_json_atomic

SUBNET_PREFIX = "10.77.0"
BRIDGE_ADDRESS = f"{SUBNET_PREFIX}.1"
SUBNET = f"{SUBNET_PREFIX}.0/24"
FIRST_NODE_HOST = 10
NODE_INTERFACE = "eth0"
#: Priorities of the two routing rules that keep node traffic on the bridge (recognisable, removed by
#: ``down``): bridge -> subnet is routed normally, anything else from the bridge is prohibited.
RULE_PREFS = (7706, 7707)
SHORT_ID_LEN = 6

#: ``ip netns exec NAME`` bind-mounts ``/etc/netns/NAME/*`` over ``/etc/*``: each node gets a hosts file
#: naming every node, and a resolv.conf without name servers. Without them the JVMs' reverse lookup of their
#: own address goes to the machine's DNS server, which a namespace cannot reach: 10 s per daemon start.
ETC_NETNS = Path("/etc/netns")

_NAMESPACE_RE = re.compile(r"^ddl-([0-9a-f]{6})-node(\d+)$")
_LINK_RE = re.compile(r"^ddl(?:br([0-9a-f]{6})|([0-9a-f]{6})n\d+)$")
_RATE_RE = re.compile(r"^\d+(\.\d+)?(bit|kbit|mbit|gbit|tbit|bps|kbps|mbps|gbps)$")
_DELAY_RE = re.compile(r"^\d+(\.\d+)?(us|ms|s)$")


class NetnsError(DdlError):
    """An ``ip``/``tc`` command for the namespace nodes failed; the message carries its stderr."""


@dataclass(frozen=True)
class NetnsNode:
    """One node of a namespace cluster: where it lives and which interfaces count its traffic."""

    name: str  # node0 (master + driver), node1..nodeN-1 (workers)
    namespace: str  # ddl-<id>-node<i>
    address: str  # 10.77.0.(10+i)
    host_veth: str  # the veth end on the bridge, in the root namespace
    interface: str = NODE_INTERFACE  # the veth end inside the namespace

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def short_id(cluster_id: str) -> str:
    return cluster_id[:SHORT_ID_LEN]


def bridge_name(cluster_id: str) -> str:
    return f"ddlbr{short_id(cluster_id)}"


def namespace_name(cluster_id: str, index: int) -> str:
    return f"ddl-{short_id(cluster_id)}-node{index}"


def node_address(index: int) -> str:
    return f"{SUBNET_PREFIX}.{FIRST_NODE_HOST + index}"


def plan_nodes(cluster_id: str, count: int) -> list[NetnsNode]:
    """Names and addresses of ``count`` nodes (node0 is the master), before anything is created."""
    if not 1 <= count <= 200:
        raise UserInputError(f"a namespace cluster holds 1..200 nodes, not {count}")
    sid = short_id(cluster_id)
    return [NetnsNode(f"node{i}", namespace_name(cluster_id, i), node_address(i), f"ddl{sid}n{i}")
            for i in range(count)]


def ip_binary() -> str | None:
    return shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip") if os.path.exists(p)), None)


def tc_binary() -> str | None:
    return shutil.which("tc") or next((p for p in ("/usr/sbin/tc", "/sbin/tc") if os.path.exists(p)), None)


def netns_unavailable_reason() -> str | None:
    """Why namespace nodes cannot be made here (None when they can): not root, no iproute2, no permission.

    Probes by creating and deleting a throw-away namespace, because being root inside a container without
    CAP_SYS_ADMIN / CAP_NET_ADMIN is not enough.
    """
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN)"
    ip = ip_binary()
    if ip is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"ddl-probe{os.getpid()}"
    made = subprocess.run([ip, "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run([ip, "netns", "del", probe], capture_output=True, check=False)
    return None


def validate_shaping(bandwidth: str | None, latency: str | None) -> None:
    """Refuse malformed ``--bandwidth``/``--latency`` values before anything is created (exit code 2)."""
    if bandwidth is not None and not _RATE_RE.match(bandwidth.lower()):
        raise UserInputError(f"--bandwidth {bandwidth!r}: give a tc rate such as 100mbit or 1gbit")
    if latency is not None and not _DELAY_RE.match(latency.lower()):
        raise UserInputError(f"--latency {latency!r}: give a delay such as 0.2ms or 5ms")
    if (bandwidth or latency) and tc_binary() is None:
        raise UserInputError("--bandwidth/--latency need the `tc` command (iproute2)")


def _run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=30)
    if check and proc.returncode != 0:
        raise NetnsError(f"`{' '.join(argv)}` failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    ip = ip_binary()
    if ip is None:
        raise NetnsError("the `ip` command (iproute2) is not installed")
    return _run([ip, *args], check=check)


def _tc(*args: str, namespace: str | None = None) -> None:
    tc = tc_binary()
    if tc is None:
        raise NetnsError("the `tc` command (iproute2) is not installed")
    _run([tc, *(["-n", namespace] if namespace else []), *args])


#: The tbf bucket: 10 ms of traffic, at least a GSO super-packet (64 KiB on a veth) plus a frame.
TBF_BURST_S = 0.01
TBF_MIN_BURST_BYTES = 64 * 1024 + 1600


def _shape(device: str, namespace: str | None, bandwidth: str | None, latency: str | None) -> None:
    """Egress shaping of one veth end: ``netem`` delay at the root, ``tbf`` rate below it (or alone).

    The tbf bucket holds 10 ms of traffic but at least 64 KiB, so a GSO super-packet (up to 64 KiB on a
    veth) always fits and the rate, not the bucket, limits throughput.
    """
    parent = ["root"]
    if latency:
        try:
            _tc("qdisc", "add", "dev", device, "root", "handle", "1:", "netem", "delay", latency, "limit", "10000",
                namespace=namespace)
        except NetnsError as err:
            if "unknown" in str(err).lower():
                raise NetnsError(
                    "--latency needs the kernel's netem qdisc (sch_netem), which this kernel does not offer; "
                    "run without --latency"
                ) from None
            raise
        parent = ["parent", "1:1"]
    if bandwidth:
        bits = _rate_bits(bandwidth)
        burst = max(TBF_MIN_BURST_BYTES, int(bits / 8 * TBF_BURST_S))
        _tc("qdisc", "add", "dev", device, *parent, "handle", "10:", "tbf", "rate", bandwidth,
            "burst", str(burst), "latency", "50ms", namespace=namespace)


def _rate_bits(rate: str) -> float:
    """Bits per second of a tc rate string (tc's units: ``bit`` are bits, ``bps`` are bytes)."""
    m = re.match(r"^(\d+(?:\.\d+)?)([a-z]*)$", rate.lower())
    if not m:
        raise UserInputError(f"{rate!r} is not a rate")
    value, unit = float(m.group(1)), m.group(2)
    scale = {"": 1, "bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
             "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9}
    if unit not in scale:
        raise UserInputError(f"{rate!r}: unknown rate unit {unit!r}")
    return value * scale[unit]


def create_network(
    cluster_id: str, count: int, bandwidth: str | None = None, latency: str | None = None
) -> list[NetnsNode]:
    """Create the bridge and ``count`` namespace nodes; on any failure remove what was made and raise."""
    validate_shaping(bandwidth, latency)
    nodes = plan_nodes(cluster_id, count)
    bridge = bridge_name(cluster_id)
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{BRIDGE_ADDRESS}/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        # Nothing from the nodes is routed beyond the bridge's subnet (no traffic leaves the machine).
        _ip("rule", "add", "iif", bridge, "to", SUBNET, "lookup", "main", "pref", str(RULE_PREFS[0]))
        _ip("rule", "add", "iif", bridge, "prohibit", "pref", str(RULE_PREFS[1]))
        _allow_bridged(bridge, True)
        for node in nodes:
            _ip("netns", "add", node.namespace)
            _ip("link", "add", node.host_veth, "type", "veth", "peer", "name", node.interface,
                "netns", node.namespace)
            _ip("link", "set", node.host_veth, "master", bridge)
            _ip("link", "set", node.host_veth, "up")
            _ip("-n", node.namespace, "link", "set", "lo", "up")
            _ip("-n", node.namespace, "addr", "add", f"{node.address}/24", "dev", node.interface)
            _ip("-n", node.namespace, "link", "set", node.interface, "up")
            _ip("-n", node.namespace, "route", "add", "default", "via", BRIDGE_ADDRESS)
            _write_node_etc(node, nodes)
            if bandwidth or latency:
                _shape(node.host_veth, None, bandwidth, latency)  # toward the node: its download
                _shape(node.interface, node.namespace, bandwidth, latency)  # from the node: its upload
    except BaseException:
        destroy_network(cluster_id)
        raise
    return nodes


def set_link(host_veth: str, up: bool) -> None:
    """Unplug (``up=False``) or replug a node's cable: the bridge end of its veth goes down or up, so the
    node's packets are dropped both ways while its processes and sockets live on."""
    _ip("link", "set", host_veth, "up" if up else "down")


def _write_node_etc(node: NetnsNode, nodes: Sequence[NetnsNode]) -> None:
    etc = ETC_NETNS / node.namespace
    etc.mkdir(parents=True, exist_ok=True)
    hosts = ["127.0.0.1 localhost", f"127.0.0.1 {socket_hostname()}"]
    hosts += [f"{n.address} {n.namespace} {n.name}" for n in nodes]
    (etc / "hosts").write_text("\n".join(hosts) + "\n")
    (etc / "resolv.conf").write_text("# ddl namespace node: names come from hosts only\noptions timeout:1 attempts:1\n")


def socket_hostname() -> str:
    import socket

    return socket.gethostname()


def destroy_network(cluster_id: str) -> list[str]:
    """Remove the namespaces, veths, qdiscs, bridge and rule of one cluster; idempotent.

    Deleting a namespace destroys the veth pair (and the qdiscs on it) once no process holds the
    namespace, so kill the cluster's processes first. Returns what was removed.
    """
    sid = short_id(cluster_id)
    removed = []
    for ns in list_namespaces():
        m = _NAMESPACE_RE.match(ns)
        if m and m.group(1) == sid:
            _ip("netns", "del", ns, check=False)
            removed.append(f"netns {ns}")
    for etc in ETC_NETNS.glob(f"ddl-{sid}-node*") if ETC_NETNS.is_dir() else []:
        if _NAMESPACE_RE.match(etc.name):
            shutil.rmtree(etc, ignore_errors=True)
            removed.append(f"config {etc}")
    with contextlib.suppress(OSError):
        ETC_NETNS.rmdir()  # only when empty: other tools' per-namespace files stay
    for link in list_links():
        m = _LINK_RE.match(link)
        if m and sid in (m.group(1), m.group(2)) and _ip("link", "del", link, check=False).returncode == 0:
            removed.append(f"link {link}")
    for pref in RULE_PREFS:  # the rules name this cluster's bridge
        while _ip("rule", "del", "pref", str(pref), "iif", bridge_name(cluster_id), check=False).returncode == 0:
            removed.append(f"rule {pref}")
    while _allow_bridged(bridge_name(cluster_id), False):
        removed.append("iptables FORWARD rule")
    return removed


def _allow_bridged(bridge: str, add: bool) -> bool:
    """Insert (or delete) an iptables FORWARD rule accepting node-to-node frames on ``bridge``; whether it
    did. Where bridged frames pass iptables (``br_netfilter``, which dockerd loads, and dockerd also sets
    the FORWARD policy to DROP), the nodes could not reach each other without it. No iptables: nothing to do."""
    iptables = shutil.which("iptables")
    if iptables is None:
        return False
    rule = ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"]
    if not add and _run([iptables, "-C", *rule], check=False).returncode != 0:
        return False
    return _run([iptables, "-I" if add else "-D", *rule], check=False).returncode == 0


def list_namespaces() -> list[str]:
    if ip_binary() is None:
        return []
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def list_links() -> list[str]:
    if ip_binary() is None:
        return []
    out = _ip("-o", "link", "show", check=False).stdout
    names = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@", 1)[0])
    return names


def leftover_cluster_ids() -> set[str]:
    """Short ids of every cluster that still has a ``ddl`` namespace, link or routing rule on this machine."""
    ids = set()
    for line in _ip("rule", "show", check=False).stdout.splitlines() if ip_binary() else []:
        m = re.match(r"^(\d+):.*\biif ddlbr([0-9a-f]{6})\b", line)
        if m and int(m.group(1)) in RULE_PREFS:
            ids.add(m.group(2))
    etc_dirs = [d.name for d in ETC_NETNS.iterdir()] if ETC_NETNS.is_dir() else []
    for ns in list_namespaces() + etc_dirs:
        m = _NAMESPACE_RE.match(ns)
        if m:
            ids.add(m.group(1))
    for link in list_links():
        m = _LINK_RE.match(link)
        if m:
            ids.add(m.group(1) or m.group(2))
    return ids


def _start_lock_path(short: str) -> Path:
    return Path("/run/lock") / f"ddl-netns-{short}.lock"


@contextlib.contextmanager
def starting(cluster_id: str) -> Iterator[None]:
    """Held while a namespace cluster starts: its namespaces exist before any of its processes does, and
    another ``down`` must not take them for a crash's leftovers (a crashed holder releases it)."""
    import fcntl

    path = _start_lock_path(short_id(cluster_id))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


def is_starting(short: str) -> bool:
    """True while the cluster with this short id is being started by a live process."""
    import fcntl

    path = _start_lock_path(short)
    try:
        with path.open("r") as f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return False


def interface_counters(namespace: str, interface: str = NODE_INTERFACE) -> tuple[int, int]:
    """``(rx_bytes, tx_bytes)`` of ``interface`` inside ``namespace``: the node's received and sent bytes."""
    proc = _ip("-n", namespace, "-s", "-j", "link", "show", "dev", interface)
    try:
        stats = json.loads(proc.stdout)[0]["stats64"]
        return int(stats["rx"]["bytes"]), int(stats["tx"]["bytes"])
    except (ValueError, LookupError) as err:
        raise NetnsError(f"unexpected `ip -s -j link` output for {namespace}/{interface}: {err}") from None


def node_command(namespace: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` prefixed so that it runs inside ``namespace`` (unchanged for a loopback node: None)."""
    if namespace is None:
        return list(argv)
    from ddl_commodity.resources.cgroups import remount_script

    ip = ip_binary()
    if ip is None:
        raise NetnsError("the `ip` command (iproute2) is not installed")
    remount = remount_script()
    if not remount:
        return [ip, "netns", "exec", namespace, *argv]
    return [ip, "netns", "exec", namespace, "sh", "-c", remount + '; exec "$@"', "ddl-node", *argv]


def enter(namespace: str) -> None:
    """Move the calling thread into ``namespace``'s network, and with it every thread and child process it
    starts afterwards (call it before any other thread exists to move the whole process). Unlike ``ip netns
    exec`` it leaves ``/sys`` as it is, so the process can still join a node's control group."""
    import ctypes

    clone_newnet = 0x40000000
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(fd, clone_newnet) != 0:
            raise NetnsError(f"cannot enter network namespace {namespace}: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def run_in_node(namespace: str | None, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
    """``subprocess.run`` of ``argv`` inside a node's namespace; keyword arguments go to ``subprocess.run``."""
    kwargs.setdefault("check", False)
    return subprocess.run(node_command(namespace, argv), **kwargs)


def counters_snapshot(nodes: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    """``{node name: (rx_bytes, tx_bytes)}`` of every namespace node (nodes as recorded in cluster.json)."""
    return {n["name"]: interface_counters(n["namespace"], n.get("interface", NODE_INTERFACE))
            for n in nodes if n.get("namespace")}


def tfos_roles(run_dir: Path) -> dict[str, list[str]]:
    """``{executor address: ["ps-0", "worker-1", ...]}`` of a TFoS run, from its ``cluster_info.json``.

    The driver writes that file as soon as TFoS has reserved every node (:func:`runs.record_cluster_info`).
    """
    from ddl_commodity.runs import read_cluster_info

    roles: dict[str, list[str]] = {}
    for node in sorted(read_cluster_info(run_dir), key=lambda n: (n["job_name"], n["task_index"])):
        roles.setdefault(node["host"], []).append(f"{node['job_name']}-{node['task_index']}")
    return roles


def record_run_traffic(
    run_dir: Path,
    nodes: Sequence[Mapping[str, Any]],
    before: Mapping[str, tuple[int, int]],
    after: Mapping[str, tuple[int, int]],
    roles: Mapping[str, list[str]] | None = None,
) -> Path:
    """Write ``run_dir/nodes/traffic.json``: each node's interface byte deltas over a run, with its roles.

    ``roles`` maps an executor address to the TFoS tasks it ran (default: the run's cluster_info.json),
    so the PS's traffic is attributed to the node that hosted the PS.
    """
    run_dir = Path(run_dir)
    roles = tfos_roles(run_dir) if roles is None else roles
    out: dict[str, Any] = {"method": "netns-interface", "time": time.time(), "nodes": {}}
    for n in nodes:
        name = n["name"]
        if name not in before or name not in after:
            continue
        rx0, tx0 = before[name]
        rx1, tx1 = after[name]
        node_roles = list(n.get("roles", [])) + list(roles.get(n["address"], []))
        out["nodes"][name] = {"namespace": n.get("namespace"), "address": n["address"],
                              "interface": n.get("interface", NODE_INTERFACE), "roles": node_roles,
                              "rx_bytes": rx1 - rx0, "tx_bytes": tx1 - tx0}
    return write_json_atomic(run_dir / "nodes" / "traffic.json", out)
