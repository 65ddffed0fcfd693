"""Nodes that behave like separate PCs: CPU shares, memory caps and node faults on real cgroups, with real
Spark daemons and real TFoS runs started as a user would (``ddl cluster ...``, ``ddl run``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ddl_commodity.cluster.local import read_state
from ddl_commodity.resources import cgroups
from ddl_commodity.resources.profiles import load_profile
from ddl_commodity.runs import read_jsonl
from tests.integration.test_redshift_cluster import (
    assert_no_leftover_processes,
    assert_running,
    check_data_parallel_run,
    check_quiet_console,
    heartbeat_gaps,
    tiny_config,
    worker_records,
)

_REASON = cgroups.unavailable_reason()
pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(_REASON is not None, reason=f"no writable cgroups: {_REASON}")]

BUSY_LOOP = [sys.executable, "-c", "while True: pass"]


def ddl(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ddl_commodity.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)


def measured_shares(groups: dict[str, cgroups.NodeGroup], seconds: float) -> dict[str, float]:
    """Cores each group used over ``seconds``, from its own CPU accounting."""
    before = {name: g.usage() for name, g in groups.items()}
    time.sleep(seconds)
    after = {name: g.usage() for name, g in groups.items()}
    return {name: (after[name].cpu_seconds - before[name].cpu_seconds) / (after[name].time - before[name].time)
            for name in groups}


@pytest.mark.serial
def test_four_nodes_get_their_share_and_obey_faults(tmp_path: Path) -> None:
    """`up --nodes 4 --node-cpus 0.4`: a CPU-bound loop on every node at once gets 0.4 +- 0.04 of a core;
    `slow 2` halves a node's share, `freeze` stops it, `thaw` resumes it; `down` leaves nothing behind."""
    up = ddl("cluster", "up", "--nodes", "4", "--node-cpus", "0.4", "--node-memory", "1g", cwd=tmp_path)
    assert up.returncode == 0, up.stdout + up.stderr
    state = read_state(tmp_path / ".cluster")
    groups = state.groups()
    try:
        assert sorted(groups) == ["node0", "node1", "node2", "node3"]
        assert all(line.endswith("0.4 core, 1.0 GiB") for line in up.stdout.splitlines() if "node" in line[:8])
        loops = {name: subprocess.Popen(cgroups.enter_command(g, BUSY_LOOP)) for name, g in groups.items()}
        deadline = time.monotonic() + 20
        while not all(p.pid in groups[n].pids() for n, p in loops.items()):
            assert time.monotonic() < deadline, "the loops never joined their nodes"
            time.sleep(0.1)
        time.sleep(1.0)
        shares = measured_shares(groups, 3.0)
        print(f"4 nodes at 0.4: {shares}")
        assert all(abs(s - 0.4) <= 0.04 for s in shares.values()), shares

        status = ddl("cluster", "status", cwd=tmp_path)
        rows = {line.split()[0]: line.split() for line in status.stdout.splitlines() if re.match(r"^  node\d", line)}
        assert sorted(rows) == sorted(groups), status.stdout
        for cols in rows.values():  # node role address spark procs share cpu% wait% mem / cap
            assert cols[5] == "0.4" and 80 <= float(cols[6]) <= 120 and cols[10] == "1024", cols

        assert ddl("cluster", "fault", "node1", "slow", "2", cwd=tmp_path).returncode == 0
        frozen = ddl("cluster", "fault", "node2", "freeze", cwd=tmp_path)
        assert frozen.returncode == 0 and "node2 frozen" in frozen.stdout, frozen.stderr
        time.sleep(0.5)
        shares = measured_shares(groups, 3.0)
        print(f"node1 slowed x2, node2 frozen: {shares}")
        assert abs(shares["node1"] - 0.2) <= 0.02 and shares["node2"] < 0.01 and abs(shares["node3"] - 0.4) <= 0.04
        status = ddl("cluster", "status", cwd=tmp_path).stdout
        assert "slow x2" in status and "frozen" in status
        assert ddl("cluster", "fault", "node2", "thaw", cwd=tmp_path).returncode == 0
        assert measured_shares({"node2": groups["node2"]}, 1.0)["node2"] > 0.3

        for bad, says in ((("node9", "freeze"), "no node 'node9'"), (("node1", "partition"), "namespace cluster"),
                          (("node1", "slow"), "slow takes a FACTOR")):
            proc = ddl("cluster", "fault", *bad, cwd=tmp_path)
            assert proc.returncode == 2 and says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, bad
    finally:
        down = ddl("cluster", "down", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert all(p.wait(timeout=10) is not None for p in loops.values())  # the loops died with their nodes
    assert not any(Path(d).exists() for g in groups.values() for d in g.dirs.values())
    assert_no_leftover_processes(tmp_path)


def test_isolation_without_writable_cgroups_is_refused(tmp_path: Path) -> None:
    """Asked for node limits where no cgroup is writable: one line, exit 2, nothing written.

    The command runs in a private mount namespace whose cgroup mounts are remounted read-only: to the
    toolkit exactly what an unprivileged user sees (``os.access(W_OK)`` fails), and unlike switching to
    another user it works wherever the checkout is (``mktemp -d`` makes a 0700 directory)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (util-linux) for a mount namespace with read-only cgroups")
    readonly = 'for m in $(findmnt -rn -t cgroup,cgroup2 -o TARGET); do mount -o remount,bind,ro "$m"; done'
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-ec",
                           f'{readonly}; exec "$@"', "sh", sys.executable, "-m", "ddl_commodity.cli", "cluster", "up",
                           "--nodes", "2", "--profile", "thesis"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "node limits asked for" in proc.stderr and "not writable" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / ".cluster").exists()


# --- faults during real runs -----------------------------------------------------------------------------

def fault_run_config(tmp_path: Path, name: str, **training: object) -> dict:
    cfg = tiny_config(tmp_path, **{"data_distribution": "disjoint", "epochs": 6, **training})
    cfg["name"] = name
    # Well below the embedded cluster's worker timeout, so that a frozen or killed node is told by its
    # silence before Spark drops its worker (with both at 15 s, Spark can be first to notice a frozen node).
    cfg["cluster"] = {"heartbeat_timeout_s": 8}
    return cfg


def start_run(tmp_path: Path, cfg: dict) -> tuple[subprocess.Popen, Path]:
    path = tmp_path / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "ddl_commodity.cli", "run", str(path), "--run-id", cfg["name"],
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, tmp_path / "runs" / cfg["name"]


def node_of(run_dir: Path, task: str, proc: subprocess.Popen, after_epochs: int = 0) -> str:
    """The cluster node running ``task`` (from the run's ``tasks`` records), once worker-1 has trained
    ``after_epochs`` epochs."""
    deadline = time.monotonic() + 300
    while True:
        assert_running(proc, deadline, f"{task} never started, or worker-1 never trained {after_epochs} epochs")
        nodes = {r["task"]: r["node"] for r in read_jsonl(run_dir / "tasks.jsonl.partial")}
        done = read_jsonl(run_dir / "workers" / "worker-1.jsonl.partial")
        if task in nodes and len(done) >= after_epochs:
            return nodes[task]
        time.sleep(0.2)


def fault(run_dir: Path, node: str, *action: str) -> None:
    proc = ddl("cluster", "fault", node, *action, "--state-dir", str(run_dir / "cluster"), cwd=run_dir.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def assert_no_groups_left(run_dir: Path) -> None:
    (logs,) = (run_dir / "cluster").glob("logs-*")  # the embedded cluster's id names its log directory
    cluster_id = logs.name.removeprefix("logs-")
    assert not [p for p in cgroups.leftover_groups() if p.name == f"ddl-{cluster_id}"]


def test_frozen_ps_ends_the_run_naming_it(tmp_path: Path) -> None:
    # 30 epochs of ~0.3 s: the freeze lands in training (with 6, `ddl cluster fault` could land after the last).
    proc, run_dir = start_run(tmp_path, fault_run_config(tmp_path, "ps-freeze", epochs=30))
    node = node_of(run_dir, "ps-0", proc, after_epochs=1)
    fault(run_dir, node, "freeze")
    frozen_at = time.monotonic()
    _, err = proc.communicate(timeout=180)
    print(f"frozen PS: the run ended {time.monotonic() - frozen_at:.1f} s after the freeze")
    assert proc.returncode == 1 and time.monotonic() - frozen_at < 60, err
    assert f"node ps-0 stopped responding (no heartbeat for 8 s) on {node}" in err, err + heartbeat_gaps(run_dir)
    assert "its process is hung (stopped or frozen" in err, err  # hung, not dead
    assert json.loads((run_dir / "status.json").read_text())["state"] == "failed"
    assert_no_leftover_processes(tmp_path)  # frozen processes cannot die: the teardown thawed them
    assert_no_groups_left(run_dir)


def test_run_survives_a_killed_and_a_frozen_worker_when_tolerated(tmp_path: Path) -> None:
    """`training.tolerate_worker_loss`, 3 workers, s = M: worker-1 SIGKILLed at its second epoch (dead: its
    process is gone) and worker-2's node frozen after worker-1's first (hung: alive, silent). Both are told
    by their silence; the run completes on worker-0 alone, every feed epoch trained in full, the lost shards
    dealt to the live workers. (One run for both kinds of loss: two would cost the suite 30 CPU-s more.)"""
    cfg = fault_run_config(tmp_path, "tolerate", tolerate_worker_loss=True, epochs=5, workers=3)
    cfg["ps"]["s"] = 3  # s = M: no aggregate without every live worker, so the freeze lands before the end
    cfg["faults"] = {"worker": 1, "epoch": 2, "kind": "sigkill"}
    proc, run_dir = start_run(tmp_path, cfg)
    fault(run_dir, node_of(run_dir, "worker-2", proc, after_epochs=1), "freeze")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err + (run_dir / "driver.log").read_text()[-5000:] + heartbeat_gaps(run_dir)
    assert "worker-1 lost" in out and "worker-2 lost" in out, out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert json.loads((run_dir / "status.json").read_text())["state"] == "succeeded"

    # Both losses are recorded, in the summary and as PS events; s dropped to the one live worker.
    losses = {loss["worker"]: loss for loss in summary["worker_losses"]}
    assert sorted(losses) == ["worker-1", "worker-2"], summary["worker_losses"]
    assert all(loss["detected_by"] == "heartbeat silence" and loss["executor_released"] for loss in losses.values())
    assert sorted(loss["s_effective"] for loss in losses.values()) == [1, 2]
    lost = [e for e in read_jsonl(run_dir / "ps.jsonl") if e["event"] == "lost"]
    assert sorted(e["worker"] for e in lost) == [1, 2] and min(e["s_effective"] for e in lost) == 1
    assert summary["final"]["ps"]["s_effective"] >= 1 and summary["final"]["ps"]["live_workers"] == 0

    # Every feed epoch was trained in full: worker-0 alone after the losses, the data re-dealt to it.
    live = summary["live_workers_per_epoch"]
    assert live["0"] == 3 and live[str(cfg["training"]["epochs"] - 1)] == 1
    check = summary["data_distribution_check"]
    assert check["consistent"], check
    workers = worker_records(run_dir)
    assert [r["feed_epoch"] for r in workers["worker-1"]] == [0]
    trained = {(r["feed_epoch"], r["shard"]) for recs in workers.values() for r in recs}
    lost_shards = {(x["feed_epoch"], s) for x in check["lost_shards"] for s in x["shards"]}
    expected = {(e, s) for e, n in live.items() for s in range(n)}
    assert {(str(e), s) for e, s in trained | lost_shards} == expected
    assert summary["final"]["val_accuracy"] is not None
    recs = sorted(workers["worker-0"], key=lambda r: r["epoch"])
    assert recs[-1]["loss"] < recs[0]["loss"], recs
    assert_no_leftover_processes(tmp_path)
    assert_no_groups_left(run_dir)


def test_memory_cap_kills_and_names_the_node(tmp_path: Path) -> None:
    """`cluster.node_memory: 2g` and a worker allocating past it: the kernel kills it, the run names the node."""
    cfg = fault_run_config(tmp_path, "node-oom", epochs=4)
    cfg["cluster"]["node_memory"] = "2g"
    cfg["faults"] = {"worker": 1, "epoch": 2, "kind": "oom"}
    proc, run_dir = start_run(tmp_path, cfg)
    node = node_of(run_dir, "worker-1", proc)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, out + err
    assert f"node {node} reached its memory cap (2.00 GiB): the kernel's OOM killer ended" in err, err
    assert "worker-1" in err
    assert_no_leftover_processes(tmp_path)


def test_straggler_is_visible_and_the_run_completes(tmp_path: Path) -> None:
    """Every node 1 core (`cluster.node_cpus`), worker-1's node slowed 6x, s < M: the run completes; the
    results show which worker straggled, by how much per epoch, and its staleness at the PS. (6x, not 4x:
    the other half of the suite runs beside this test, so worker-0 gets less than its core, and at 4x it
    can train less than 1.5x faster.)"""
    cfg = fault_run_config(tmp_path, "straggler", epochs=8)
    # Epochs of ~20 steps, not 7: a 0.5 s epoch is five CFS periods, and under the suite's load a 1/6-core
    # worker can then train its last one only 1.3x slower than worker-0. 8 epochs, not 4: fed in one Spark
    # job, epochs follow each other without a gap, and `ddl cluster fault` (a CLI started after the first
    # epoch) can land after the fourth when epochs take 0.4 s on a less loaded machine.
    cfg["data"]["samples"] = 720
    cfg["cluster"]["node_cpus"] = 1.0
    cfg["ps"]["s"] = 1
    cfg["monitor"] = {"interval_s": 0.5}
    proc, run_dir = start_run(tmp_path, cfg)
    node = node_of(run_dir, "worker-1", proc, after_epochs=1)
    fault(run_dir, node, "slow", "6")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out + err + heartbeat_gaps(run_dir)
    # s = 1 of M = 2: every push applied alone (check_data_parallel_run's asynchronous case)
    check_data_parallel_run(run_dir, next((tmp_path / "data").glob("*.h5")))
    # Training time (waiting for the next feed excluded) of the last epoch, slowed for all of it.
    last = {w: recs[-1]["train_seconds"] for w, recs in worker_records(run_dir).items()}
    print(f"straggler: worker-1 trained its last epoch in {last['worker-1']:.2f} s, worker-0 in {last['worker-0']:.2f}")
    assert last["worker-1"] > 1.5 * last["worker-0"], last
    applied = [u for u in read_jsonl(run_dir / "ps.jsonl") if u.get("event", "applied") == "applied"]
    assert max(u["tau"] for u in applied if u["worker"] == 1) >= 1, applied
    averages = json.loads((run_dir / "summary.json").read_text())["node_averages"]
    assert averages["worker-0"]["cpu_share"] == 1.0
    assert averages["worker-1"]["cpu_share"] == pytest.approx(1 / 6, abs=1e-3)
    assert_no_leftover_processes(tmp_path)


def test_a_run_on_the_thesis_profile(tmp_path: Path) -> None:
    """`cluster: {profile: thesis}`: every node d of a core and 2 GB (d = 0.4 on 2 cores); the run records the
    profile and d, prints and reports its time in cluster seconds, and samples CPU as % of the node's share.
    Not `serial`: its CPU bounds are upper bounds, which a busy machine (less CPU per node) keeps.

    The run is s = M = 2 on disjoint data, the synchronous case of :func:`check_data_parallel_run`, and its
    console is the one a user reads."""
    d = load_profile("thesis").resolve().dilation
    cfg = fault_run_config(tmp_path, "thesis-profile", epochs=3)
    cfg["cluster"]["profile"] = "thesis"
    cfg["ps"].update(s=2, push_timeout_s=60)  # a push that waits for nothing fails the run within a minute
    cfg["monitor"] = {"interval_s": 0.5}
    proc, run_dir = start_run(tmp_path, cfg)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out + err + heartbeat_gaps(run_dir)
    check_quiet_console(out, err, run_dir)
    check_data_parallel_run(run_dir, next((tmp_path / "data").glob("*.h5")))
    assert f"each node {d:g} core and 2.0 GiB, profile thesis (d = {d:g})" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    cluster = summary["cluster"]
    assert cluster["profile"] == "thesis" and cluster["dilation"] == d and cluster["node_cpus"] == d
    assert cluster["wall_cluster_seconds"] == pytest.approx(summary["wall_seconds"] * d, rel=0.01)
    assert f"({cluster['wall_cluster_seconds']:.0f} cluster s at d = {d:g})" in out
    for task, a in summary["node_averages"].items():
        assert a["cpu_share"] == d and a["memory_limit_mb"] == 2048, (task, a)
        # % of the node's share, not of the machine (on which 0.4 core would read up to 500 %); single
        # 0.5 s samples of a throttled node are noisy, the mean is not.
        assert a["cpu_percent_mean"] <= 110 and a["cpu_percent_max"] < 250, (task, a)
    report = ddl("report", str(run_dir), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    assert f"time dilation d = {d:g}" in (run_dir / "report.md").read_text()
    assert_no_leftover_processes(tmp_path)
