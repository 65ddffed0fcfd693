"""The docker-compose five-node cluster, built and run for real: engine, image, `up`, a
redshift data-parallel run and a land-cover model-parallel run on the containers with every node sampled,
`docker kill` of a worker container mid-run, and `down` leaving nothing behind.

Tests run in file order on one cluster (module fixture). The engine is started with
``scripts/docker-engine.sh start`` (which installs it where apt can) and stopped again if this module
started it; the module is skipped, saying why, only when no engine can be started. It runs in the suite's
parallel part, on one xdist worker, and is over before the tests that measure CPU shares start.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from ddl_commodity.runs import read_jsonl
from tests.integration.test_redshift_cluster import assert_running

REPO = Path(__file__).resolve().parents[2]
PROJECT = "ddl-commodity"
pytestmark = [pytest.mark.cluster, pytest.mark.docker, pytest.mark.xdist_group("docker")]


def sh(*args: str, timeout: float = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False,
                          env=None if env is None else {**os.environ, **env})


def project_objects(kind: str) -> list[str]:
    """Containers (``ps -a``), networks or volumes that carry the compose project's label (v1 and v2 set it)."""
    cmd = ["docker", *(["ps", "-a"] if kind == "containers" else [kind, "ls"]), "-q",
           "--filter", f"label=com.docker.compose.project={PROJECT}"]
    return sh(*cmd, timeout=60).stdout.split()


def container_of(service: str) -> str:
    ids = sh("docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}",
             "--filter", f"label=com.docker.compose.service={service}", timeout=60).stdout.split()
    assert len(ids) == 1, (service, ids)
    return ids[0]


def forward_policy() -> str:
    """The iptables FORWARD policy ("" where iptables is not installed yet)."""
    try:
        rules = sh("iptables", "-S", "FORWARD", timeout=30).stdout.splitlines()
    except OSError:
        return ""
    return rules[0] if rules else ""


@pytest.fixture(scope="module")
def engine():
    already = sh("docker", "info", timeout=60).returncode == 0
    policy = forward_policy()
    started = sh("bash", "scripts/docker-engine.sh", "start", timeout=900)
    if started.returncode != 0:
        lines = (started.stderr or started.stdout).strip().splitlines()
        pytest.skip(f"no Docker engine could be started here: {lines[-1] if lines else 'no output'}")
    yield
    if not already:  # the host as it was: dockerd's chains gone, FORWARD's policy back (dockerd sets DROP)
        stopped = sh("bash", "scripts/docker-engine.sh", "stop", timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        assert "DOCKER" not in sh("iptables-save", timeout=30).stdout
        assert forward_policy() == (policy or "-P FORWARD ACCEPT")  # no iptables before: the default


@pytest.fixture(scope="module")
def cluster(engine, tmp_path_factory):
    """The image built from this checkout, the cluster up with runs and data under a temporary directory."""
    root = tmp_path_factory.mktemp("docker")
    env = {"DDL_RUNS_DIR": str(root / "runs"), "DDL_DATA_DIR": str(root / "data")}
    built = sh("bash", "scripts/docker-cluster.sh", "build", timeout=1800)
    assert built.returncode == 0, built.stderr[-3000:]
    print(built.stderr.strip())
    up = sh("bash", "scripts/docker-cluster.sh", "up", env=env, timeout=300)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        print(up.stderr.strip())
        yield env, root / "runs"
    finally:
        down = sh("bash", "scripts/docker-cluster.sh", "down", env=env, timeout=300)
        assert down.returncode == 0, down.stderr


def submit(env: dict, config: str, run_id: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return sh("bash", "scripts/docker-cluster.sh", "submit", config, "--run-id", run_id, env=env, timeout=timeout)


def node_rows(run_dir: Path) -> dict[str, list[dict]]:
    out = {}
    for path in sorted((run_dir / "nodes").glob("*.csv")):
        with path.open() as f:
            out[path.stem] = list(csv.DictReader(f))
    return out


def assert_containers_sampled(run_dir: Path, tasks: list[str]) -> None:
    """Every TF node's rows: its container's group (a 1-core share, a 2 GB cap) and its eth0 traffic."""
    rows = node_rows(run_dir)
    assert sorted(rows) == sorted(tasks), sorted(rows)
    placed = {r["task"]: r["node"] for r in read_jsonl(run_dir / "tasks.jsonl")}
    assert set(placed.values()) <= {"worker1", "worker2", "worker3", "worker4"}, placed
    assert len(set(placed.values())) == len(tasks), placed  # one TF node per worker container
    for task, node_rows_ in rows.items():
        last = node_rows_[-1]
        assert last["net_method"] == "container-interface", (task, last)
        assert float(last["cpu_share"]) == 1.0, (task, last)
        assert int(last["memory_limit"]) == 2 * 2**30, (task, last)
        assert 100 * 2**20 < int(last["memory_bytes"]) < 2 * 2**30, (task, last)  # JVM + TF: hundreds of MB
        assert int(last["net_rx_bytes"]) > 0 and int(last["net_tx_bytes"]) > 0, (task, last)
        assert float(last["cpu_seconds"]) > float(node_rows_[0]["cpu_seconds"]), task


def run_on_containers(cluster, config: str, run_id: str, what: str) -> tuple[Path, dict]:
    """``docker-cluster.sh submit`` a config; the run directory and summary of a run that succeeded."""
    env, runs = cluster
    t0 = time.monotonic()
    proc = submit(env, config, run_id)
    print(f"{what} on the compose cluster: {time.monotonic() - t0:.0f} s")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return runs / run_id, json.loads((runs / run_id / "summary.json").read_text())


def quickstart_copy(cluster, name: str, samples: int, epochs: int) -> str:
    """The compose quickstart config with fewer spectra (and ``epochs``) and a smaller network, its cluster
    section unchanged, written where the master container sees it: the mounted runs directory. Its path as
    the master container's ``ddl`` reads it."""
    _, runs = cluster
    cfg = yaml.safe_load((REPO / "docker" / "configs" / "quickstart.yaml").read_text())
    cfg["data"]["samples"], cfg["training"]["epochs"] = samples, epochs
    cfg["model"]["filters"] = [2, 2]  # 2.9M weights, not 5.7M: half the PS exchange on a loaded machine
    (runs / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    return f"runs/{name}.yaml"


def test_quickstart_runs_on_the_containers(cluster) -> None:
    """The compose quickstart on a tenth of its spectra (its cluster section unchanged): seconds, not a minute."""
    config = quickstart_copy(cluster, "dk-quickstart", samples=1600, epochs=3)
    run_dir, summary = run_on_containers(cluster, config, "dk-quickstart", "quickstart")
    assert summary["final"]["ps_version"] >= 1
    assert summary["data_distribution_check"]["consistent"], summary["data_distribution_check"]
    assert_containers_sampled(run_dir, ["ps-0", "worker-0", "worker-1"])


def test_landcover_model_parallel_runs_on_the_containers(cluster) -> None:
    run_dir, summary = run_on_containers(cluster, "configs/docker/landcover.yaml", "dk-landcover",
                                         "land-cover model parallel")
    assert summary["placement_check"]["consistent"], summary["placement_check"]["problems"]
    # Fig 6.3(b): the HSI worker receives its patches' activations' gradients and the PS's weights
    assert summary["nodes"]["worker-1"]["rx_bytes_per_step"] > 100_000, summary["nodes"]
    assert_containers_sampled(run_dir, ["ps-0", "worker-0", "worker-1", "worker-2"])


def test_a_killed_worker_container_ends_the_run_naming_it(cluster) -> None:
    """The quickstart's setting on a tenth of its spectra (its first epoch in seconds, not half a minute)."""
    env, runs = cluster
    run_dir = runs / "dk-kill"
    config = quickstart_copy(cluster, "dk-kill", samples=1600, epochs=20)
    cmd = ["bash", "scripts/docker-cluster.sh", "submit", config, "--run-id", "dk-kill"]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    partial = run_dir / "workers" / "worker-0.jsonl.partial"
    deadline = time.monotonic() + 600
    while not (partial.exists() and partial.read_text().strip()):
        assert_running(proc, deadline, "the run never reached its first epoch")
        time.sleep(0.5)
    tasks = read_jsonl(run_dir / "tasks.jsonl.partial")
    victim = next(r["node"] for r in tasks if r["task"] == "worker-1")
    assert sh("docker", "kill", container_of(victim), timeout=60).returncode == 0
    killed = time.monotonic()
    _, stderr = proc.communicate(timeout=300)
    took = time.monotonic() - killed
    print(f"docker kill {victim} (worker-1) -> the run ended in {took:.0f} s")
    assert proc.returncode != 0
    assert "node worker-1 " in stderr, stderr[-3000:]
    assert took < 60
    assert not (run_dir / "summary.json").exists()


def test_down_leaves_nothing_behind(cluster) -> None:
    env, _ = cluster
    down = sh("bash", "scripts/docker-cluster.sh", "down", env=env, timeout=300)
    assert down.returncode == 0, down.stderr
    for kind in ("containers", "network", "volume"):
        assert project_objects(kind) == [], kind
