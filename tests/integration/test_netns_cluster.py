"""The five-node network-namespace cluster: real namespaces, veths, tc, Spark daemons and a real run.

Tests run in file order. The first ones build bare namespace networks (no Spark) to check interface counters
and tc shaping with a bounded socket transfer; then one five-node cluster is started with `ddl cluster up
--netns` (module fixture), used by the remaining tests, and taken down with `ddl cluster down`; the last
test checks that nothing is left behind. Needs root and iproute2; skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from ddl_commodity.cluster import netns
from ddl_commodity.cluster.local import read_state, tagged_processes
from tests.process_tree import ddl_processes, run_watched

REPO = Path(__file__).resolve().parents[2]
_REASON = netns.netns_unavailable_reason()
pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(_REASON is not None, reason=f"network namespaces unavailable: {_REASON}"),
    # Namespace clusters share the 10.77.0.0/24 bridge subnet: these tests run one after another.
    pytest.mark.xdist_group("netns"),
]

TRANSFER_BYTES = 25 * 2**20
#: A one-way bulk transfer: the receiver times from the first to the last byte (connection set-up excluded).
TRANSFER = """
import socket, sys, time
mode, host, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if mode == "recv":
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port)); srv.listen(1); srv.settimeout(30)
    print("ready", flush=True)
    conn, _ = srv.accept(); conn.settimeout(30)
    got, t0 = 0, None
    while got < n:
        chunk = conn.recv(1 << 20)
        if not chunk:
            break
        t0 = t0 or time.monotonic()
        got += len(chunk)
    print(got, time.monotonic() - t0, flush=True)
else:
    sock = socket.create_connection((host, port), timeout=30)
    block, sent = b"\\0" * (1 << 20), 0
    while sent < n:
        k = min(len(block), n - sent); sock.sendall(block[:k]); sent += k
    sock.close()
"""


def transfer(tmp_path: Path, src: dict, dst: dict, nbytes: int = TRANSFER_BYTES) -> tuple[int, float]:
    """Send ``nbytes`` from node ``src`` to node ``dst`` over TCP; returns (bytes received, seconds)."""
    script = tmp_path / "transfer.py"
    script.write_text(TRANSFER)
    port = "5201"
    recv = subprocess.Popen(netns.node_command(dst["namespace"], [sys.executable, str(script), "recv",
                                                                  dst["address"], port, str(nbytes)]),
                            stdout=subprocess.PIPE, text=True)
    try:
        assert recv.stdout.readline().strip() == "ready"
        sender = netns.run_in_node(src["namespace"], [sys.executable, str(script), "send", dst["address"], port,
                                                      str(nbytes)], capture_output=True, text=True, timeout=60)
        assert sender.returncode == 0, sender.stderr
        out, _ = recv.communicate(timeout=60)
    finally:
        if recv.poll() is None:
            recv.kill()
            recv.wait()
    got, seconds = out.split()
    return int(got), float(seconds)


def ddl(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ddl_commodity.cli", "cluster", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, check=False)


def ddl_leftovers(cluster_id: str) -> dict[str, list[str]]:
    """The namespaces, links, routing rules, /etc/netns dirs and processes of one cluster.

    Scoped to ``cluster_id`` so that another cluster on the machine (a benchmark, a user's) is not counted.
    """
    short = netns.short_id(cluster_id)
    rules = subprocess.run([netns.ip_binary(), "rule", "show"], capture_output=True, text=True).stdout
    return {
        "namespaces": [n for n in netns.list_namespaces() if n.startswith(f"ddl-{short}-")],
        "links": [link for link in netns.list_links() if link.startswith("ddl") and short in link],
        "rules": [line for line in rules.splitlines() if f"ddlbr{short}" in line],
        "etc": [str(d) for d in netns.ETC_NETNS.glob(f"ddl-{short}-*")],
        "processes": [f"{p.pid} {' '.join(p.cmdline()[:3])}" for p in tagged_processes(cluster_id)
                      if p.is_running() and p.status() != psutil.STATUS_ZOMBIE],
    }


# --- bare namespace networks: counters and shaping ---------------------------------------------------------

@pytest.mark.serial  # measures a shaped rate: the parallel part's load alone can take it to 80 of 100 Mbit/s
@pytest.mark.parametrize("bandwidth", [None, "100mbit"])
def test_transfer_matches_counters_and_shaped_rate(tmp_path: Path, bandwidth: str | None) -> None:
    cluster_id = f"f0{'1' if bandwidth else '0'}e57{os.getpid():06x}"[:12]
    nodes = [n.to_dict() for n in netns.create_network(cluster_id, 3, bandwidth=bandwidth)]
    try:
        before = netns.counters_snapshot(nodes)
        got, seconds = transfer(tmp_path, nodes[1], nodes[2])
        after = netns.counters_snapshot(nodes)
    finally:
        netns.destroy_network(cluster_id)
    assert got == TRANSFER_BYTES
    sent = after["node1"][1] - before["node1"][1]
    received = after["node2"][0] - before["node2"][0]
    # Payload plus TCP/IP/Ethernet headers (~4% at 1448-byte segments, far less with GSO on a veth).
    for counted in (sent, received):
        assert TRANSFER_BYTES <= counted <= TRANSFER_BYTES * 1.05, (counted, TRANSFER_BYTES)
    # The third node saw (almost) nothing of it: the bridge forwards, it does not flood, a learned unicast.
    idle = after["node0"][0] - before["node0"][0]
    assert idle < 0.01 * TRANSFER_BYTES
    mbit = got * 8 / seconds / 1e6
    print(f"bandwidth={bandwidth}: {mbit:.1f} Mbit/s; counters tx {sent} rx {received} for {got} bytes")
    if bandwidth:
        assert 85 <= mbit <= 115, f"{mbit:.1f} Mbit/s on a 100mbit link"
    else:
        assert mbit > 300, f"{mbit:.1f} Mbit/s unshaped"


def test_down_cleans_crash_leftovers_without_state(tmp_path: Path) -> None:
    """A crashed cluster leaves namespaces and links but no state file: `down` still finds them by name."""
    cluster_id = f"dead{os.getpid():08x}"[:12]
    netns.create_network(cluster_id, 2, bandwidth="1gbit")
    assert netns.short_id(cluster_id) in netns.leftover_cluster_ids()
    proc = ddl("down", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert netns.short_id(cluster_id) not in netns.leftover_cluster_ids()


def test_bad_shaping_values_are_refused(tmp_path: Path) -> None:
    proc = ddl("up", "--netns", "--bandwidth", "fast", cwd=tmp_path)
    assert proc.returncode == 2 and "--bandwidth 'fast'" in proc.stderr
    proc = ddl("up", "--bandwidth", "100mbit", cwd=tmp_path)
    assert proc.returncode == 2 and "--netns" in proc.stderr
    assert not (tmp_path / ".cluster" / "cluster.json").exists()


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux) to drop capabilities")
def test_without_privileges_netns_falls_back_to_loopback_nodes(tmp_path: Path) -> None:
    """Root without capabilities cannot make namespaces: `up --netns` says so and starts loopback nodes,
    with the same node table, status and a clean down."""
    no_caps = ["setpriv", "--inh-caps=-all", "--bounding-set=-all"]
    proc = subprocess.run([*no_caps, sys.executable, "-m", "ddl_commodity.cli", "cluster", "up", "--nodes", "2",
                           "--memory", "1g", "--netns", "--bandwidth", "100mbit"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    state = read_state(tmp_path / ".cluster")
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "--netns is not possible here (cannot create a network namespace" in proc.stderr
        assert "starting loopback process nodes instead without link shaping" in proc.stderr
        assert not state.netns and [(n["name"], n["address"], n.get("namespace")) for n in state.nodes] == [
            ("node0", "127.0.0.1", None), ("node1", "127.0.0.1", None)]
        status = ddl("status", cwd=tmp_path, timeout=60)
        assert status.returncode == 0, status.stderr
        node_lines = [line for line in status.stdout.splitlines() if line.startswith(("  node0", "  node1"))]
        assert [(line.split()[0], line.split()[3]) for line in node_lines] == [("node0", "ALIVE"), ("node1", "ALIVE")]
        assert all("loopback: no per-node counter" in line for line in node_lines)
    finally:
        down = ddl("down", cwd=tmp_path)
    assert down.returncode == 0 and state is not None and tagged_processes(state.cluster_id) == []


# --- one five-node cluster for the rest -------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """`ddl cluster up --nodes 5 --netns --bandwidth 1gbit` (emulated 1 GbE), torn down at the end."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java runtime")
    cwd = tmp_path_factory.mktemp("netns-cluster")
    crashed = f"c0ffee{os.getpid():06x}"[:12]  # leftovers of an earlier crash, which `up` must remove
    netns.create_network(crashed, 1)
    t0 = time.monotonic()
    proc = ddl("up", "--nodes", "5", "--netns", "--bandwidth", "1gbit", cwd=cwd)
    up_s = time.monotonic() - t0
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        state = read_state(cwd / ".cluster")
        assert state is not None
        assert netns.short_id(crashed) not in netns.leftover_cluster_ids()
        print(f"netns cluster up in {up_s:.1f} s")
        yield cwd, state, proc.stdout
    finally:
        t0 = time.monotonic()
        down = ddl("down", cwd=cwd)
        print(f"netns cluster down in {time.monotonic() - t0:.1f} s: {down.stdout.strip()}")
        netns.destroy_network(crashed)


def test_up_records_nodes_namespaces_addresses(cluster) -> None:
    _cwd, state, _out = cluster
    assert state.netns and state.bandwidth == "1gbit"
    assert state.master_url == "spark://10.77.0.10:7077"
    assert [n["name"] for n in state.nodes] == [f"node{i}" for i in range(5)]
    assert [n["role"] for n in state.nodes] == ["master"] + ["worker"] * 4
    namespaces = netns.list_namespaces()
    for i, node in enumerate(state.nodes):
        assert node["address"] == f"10.77.0.{10 + i}"
        assert node["namespace"] == f"ddl-{state.cluster_id[:6]}-node{i}" and node["namespace"] in namespaces
        assert node["interface"] == "eth0" and node["host_veth"] in netns.list_links()
        # the namespace's own view: its address, and a default route (TFoS's address lookup needs it)
        route = netns.run_in_node(node["namespace"], [netns.ip_binary(), "route", "show", "default"],
                                  capture_output=True, text=True)
        assert "via 10.77.0.1" in route.stdout
        qdiscs = subprocess.run([netns.tc_binary(), "-n", node["namespace"], "qdisc", "show", "dev", "eth0"],
                                capture_output=True, text=True).stdout
        assert "tbf" in qdiscs and "1Gbit" in qdiscs
    # Spark daemons really live in the namespaces: each listens on its node's address only.
    master_pid = state.pids["master"]
    own_ns = os.readlink(f"/proc/{master_pid}/ns/net")
    assert own_ns != os.readlink("/proc/self/ns/net")


def test_second_up_is_refused(cluster) -> None:
    cwd, state, _ = cluster
    proc = ddl("up", "--nodes", "5", "--netns", cwd=cwd)
    assert proc.returncode == 2
    assert "already running" in proc.stderr and state.master_url in proc.stderr
    assert read_state(cwd / ".cluster").cluster_id == state.cluster_id


def test_status_shows_every_node_alive_with_traffic(cluster) -> None:
    cwd, state, _ = cluster
    proc = ddl("status", cwd=cwd, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[2:]
             if line.startswith("  node") and not line.startswith("  node ")}
    assert sorted(lines) == [f"node{i}" for i in range(5)]
    for i in range(5):
        # node role address spark procs share cpu% wait% mem / cap rx tx rx/s tx/s (share "-": unlimited)
        row = lines[f"node{i}"]
        assert row[2] == f"10.77.0.{10 + i}" and row[3] == "ALIVE", row
        assert int(row[4]) >= 1 and row[5] == "-" and float(row[8]) > 50, row  # a JVM per node, >50 MB
        assert row[10] == "none" and float(row[11]) >= 0 and float(row[12]) >= 0, row  # no cap; rx / tx MB
    # The master has answered the workers' registrations: its eth0 has sent bytes.
    assert netns.interface_counters(state.nodes[0]["namespace"])[1] > 0


def test_transfer_between_cluster_nodes_matches_counters(cluster, tmp_path: Path) -> None:
    """On the running cluster (links shaped to 1gbit): node1 -> node2, counted by both interfaces."""
    _, state, _ = cluster
    src, dst = state.nodes[1], state.nodes[2]
    before = netns.counters_snapshot(state.nodes)
    got, seconds = transfer(tmp_path, src, dst)
    after = netns.counters_snapshot(state.nodes)
    sent = after["node1"][1] - before["node1"][1]
    received = after["node2"][0] - before["node2"][0]
    mbit = got * 8 / seconds / 1e6
    print(f"cluster node1 -> node2: {mbit:.0f} Mbit/s at 1gbit; counters tx {sent} rx {received} for {got}")
    assert got == TRANSFER_BYTES
    for counted in (sent, received):  # idle Spark heartbeats add a few kB at most
        assert abs(counted - TRANSFER_BYTES) <= 0.05 * TRANSFER_BYTES, (counted, TRANSFER_BYTES)
    assert 850 <= mbit <= 1150 or seconds < 0.5, f"{mbit:.0f} Mbit/s on a 1gbit link"


def test_quickstart_on_the_netns_cluster_records_per_node_traffic(cluster) -> None:
    cwd, _state, _ = cluster
    config = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    # Traffic is what is checked here: a small set, written as Parquet by the run itself.
    config["data"] = {"as_parquet": True, "samples": 2000, "validation_fraction": 0.1}
    config["training"]["epochs"] = 2
    (cwd / "quickstart-small.yaml").write_text(yaml.safe_dump(config))
    proc, started = run_watched([sys.executable, "-m", "ddl_commodity.cli", "cluster", "submit",
                                 str(cwd / "quickstart-small.yaml"), "--run-id", "qs"], cwd=cwd, timeout=360)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not ddl_processes(started), ddl_processes(started)  # the driver runs in the submitting process
    run_dir = cwd / "runs" / "qs"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["workers"]) == {"worker-0", "worker-1"}
    traffic = json.loads((run_dir / "nodes" / "traffic.json").read_text())
    assert traffic["method"] == "netns-interface"
    nodes = traffic["nodes"]
    assert sorted(nodes) == [f"node{i}" for i in range(5)]
    assert "driver" in nodes["node0"]["roles"]
    by_role = {role: name for name, n in nodes.items() for role in n["roles"]}
    info = json.loads((run_dir / "cluster_info.json").read_text())["nodes"]
    assert {"ps-0", "worker-0", "worker-1"} <= set(by_role), (info, traffic)
    # TFoS ran its three tasks on three different worker nodes, found by executor address.
    tf_nodes = {by_role["ps-0"], by_role["worker-0"], by_role["worker-1"]}
    assert len(tf_nodes) == 3 and "node0" not in tf_nodes
    for name in tf_nodes:
        assert nodes[name]["rx_bytes"] > 2**20 and nodes[name]["tx_bytes"] > 2**20, (name, nodes[name])
    # The executors read the Parquet set themselves: the driver's node sent far less than the data set's
    # 2,000 spectra (1,800 float32 bands each); the PS sent the weights to both workers.
    assert nodes["node0"]["tx_bytes"] < 0.1 * 2000 * 1800 * 4, nodes["node0"]
    ps = nodes[by_role["ps-0"]]
    for worker in ("worker-0", "worker-1"):
        assert ps["tx_bytes"] > nodes[by_role[worker]]["tx_bytes"]
    idle = [name for name in nodes if name != "node0" and name not in tf_nodes]
    for name in idle:
        assert nodes[name]["rx_bytes"] + nodes[name]["tx_bytes"] < 2**20, (name, nodes[name])
    # The driver ran in the master's namespace: the PS's workers were fed from 10.77.0.10.
    config = (run_dir / "config.yaml").read_text()
    assert "spark://10.77.0.10:7077" in config


def test_partitioned_worker_ends_the_run_naming_its_node(cluster) -> None:
    """`ddl cluster fault NODE partition` on the node running worker-1, mid-run: the run ends within 60 s
    naming the task and the node; `heal` plugs the node back and it rejoins the cluster."""
    import yaml

    from ddl_commodity.runs import read_jsonl
    from tests.integration.test_redshift_cluster import assert_running, tiny_config

    cwd, _state, _ = cluster
    cfg = tiny_config(cwd, data_distribution="disjoint", epochs=6)
    cfg.update(name="partition", cluster={"heartbeat_timeout_s": 8})
    (cwd / "partition.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "ddl_commodity.cli", "cluster", "submit", "partition.yaml",
                             "--run-id", "partition"], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    run_dir = cwd / "runs" / "partition"
    deadline = time.monotonic() + 300
    while not read_jsonl(run_dir / "workers" / "worker-1.jsonl.partial"):
        assert_running(proc, deadline, "worker-1 never finished an epoch")
        time.sleep(0.2)
    node = {r["task"]: r["node"] for r in read_jsonl(run_dir / "tasks.jsonl.partial")}["worker-1"]
    cut = ddl("fault", node, "partition", cwd=cwd)
    assert cut.returncode == 0 and f"{node} partitioned" in cut.stdout, cut.stderr
    cut_at = time.monotonic()
    try:
        _, err = proc.communicate(timeout=180)
        print(f"partitioned worker: the run ended {time.monotonic() - cut_at:.1f} s after the cut")
        assert proc.returncode == 1 and time.monotonic() - cut_at < 60, err
        assert f"node worker-1 stopped responding (no heartbeat for 8 s) on {node}" in err
        assert "its process is alive but silent" in err, err  # neither dead nor frozen: cut off
    finally:
        healed = ddl("fault", node, "heal", cwd=cwd)
    assert healed.returncode == 0, healed.stderr
    deadline = time.monotonic() + 90
    while "ALIVE" not in next(line for line in ddl("status", cwd=cwd).stdout.splitlines() if f"  {node} " in line):
        assert time.monotonic() < deadline, f"{node} did not rejoin after heal"
        time.sleep(2)


def test_nothing_left_after_down(cluster) -> None:
    cwd, state, _ = cluster
    t0 = time.monotonic()
    proc = ddl("down", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    print(f"down in {time.monotonic() - t0:.1f} s")
    assert ddl_leftovers(state.cluster_id) == {"namespaces": [], "links": [], "rules": [], "etc": [], "processes": []}
    assert read_state(cwd / ".cluster") is None
    again = ddl("down", cwd=cwd)  # idempotent
    assert again.returncode == 0 and "0 processes" in again.stdout
