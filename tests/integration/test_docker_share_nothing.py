"""The share-nothing compose cluster (``docker/docker-compose.share-nothing.yml``), built and run for real: worker
containers with no mounts and no toolkit, the environment packed on the master (``ddl pack``) and shipped with
each run (``--env``), a Parquet data set on a GlusterFS volume served by a storage container and mounted by
every node's own FUSE client, a data-parallel run, ``ddl predict`` and a model-parallel run. (A ``docker kill``
mid-run is ``test_docker_cluster.py``'s: the driver detects it the same way whatever the workers have mounted.)

Tests run in file order on one cluster (module fixture), in the ``docker`` xdist group after
``test_docker_cluster.py``'s cluster is down; the engine comes from the same fixture.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from ddl_commodity.runs import read_jsonl
from tests.integration.test_docker_cluster import engine, sh  # noqa: F401  (engine: a fixture used here)

REPO = Path(__file__).resolve().parents[2]
PROJECT = "ddl-commodity-sn"
WORKERS = ("worker1", "worker2", "worker3", "worker4")
ENV = "/opt/ddl/env.tar.gz"  # in the master container
DATA = "/shared/redshift-1600"  # on the GlusterFS volume, the same path on every node
pytestmark = [pytest.mark.cluster, pytest.mark.docker, pytest.mark.xdist_group("docker")]


def cluster_sh(env: dict, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return sh("bash", "scripts/docker-cluster.sh", "--share-nothing", *args, env=env, timeout=timeout)


def container_of(service: str) -> str:
    ids = sh("docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}",
             "--filter", f"label=com.docker.compose.service={service}", timeout=60).stdout.split()
    assert len(ids) == 1, (service, ids)
    return ids[0]


def in_master(*cmd: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return sh("docker", "exec", container_of("master"), *cmd, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(engine, tmp_path_factory):  # noqa: F811
    """Images built, the cluster up, the environment packed on the master and a Parquet data set written to
    the shared volume; the host's run directory (the master's ``runs/``)."""
    root = tmp_path_factory.mktemp("docker-sn")
    env = {"DDL_RUNS_DIR": str(root / "runs")}
    t0 = time.monotonic()
    built = cluster_sh(env, "build", timeout=1800)
    assert built.returncode == 0, built.stderr[-3000:]
    print(built.stderr.strip())
    up = cluster_sh(env, "up", timeout=300)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        print(up.stderr.strip(), f"\nbuild and up: {time.monotonic() - t0:.0f} s")
        packed = in_master("ddl", "pack", "--out", ENV)
        assert packed.returncode == 0, packed.stdout[-2000:] + packed.stderr[-2000:]
        print(packed.stdout.strip().splitlines()[-1])
        data = in_master("ddl", "data", "redshift", "--samples", "1600", "--seed", "7", "--format", "parquet",
                         "--rows-per-file", "100", "--out", DATA)
        assert data.returncode == 0, data.stderr[-2000:]
        yield env, root / "runs"
    finally:
        down = cluster_sh(env, "down", timeout=300)
        assert down.returncode == 0, down.stderr


def test_workers_have_no_mounts_and_no_toolkit(cluster) -> None:
    for worker in WORKERS:
        info = json.loads(sh("docker", "inspect", container_of(worker), timeout=60).stdout)[0]
        assert info["Mounts"] == [], (worker, info["Mounts"])
        assert not info["HostConfig"].get("Binds") and not info["HostConfig"].get("Tmpfs"), worker
        # the shared volume is the node's own FUSE mount, made inside the container
        mounts = sh("docker", "exec", container_of(worker), "cat", "/proc/mounts", timeout=60).stdout
        assert "storage:/data /shared fuse.glusterfs" in mounts, (worker, mounts)
    for module in ("ddl_commodity", "tensorflow", "pyspark"):
        probe = sh("docker", "run", "--rm", "--entrypoint", "python3", "ddl-commodity-worker:latest", "-c",
                   f"import {module}", timeout=120)
        assert probe.returncode != 0 and f"No module named '{module}'" in probe.stderr, (module, probe.stderr)


def config_copy(runs: Path, name: str, base: str, epochs: int, parquet: bool = False) -> str:
    """A config of ``docker/configs/`` with ``epochs`` (and with ``parquet``: the shared Parquet data set and a
    smaller network), written where the master reads it (its runs/). Its path as the master's ``ddl`` reads it."""
    cfg = yaml.safe_load((REPO / "docker" / "configs" / base).read_text())
    cfg["training"]["epochs"] = epochs
    if parquet:
        cfg["data"] = {"source": DATA, "validation_fraction": 0.1}
        cfg["model"]["filters"] = [2, 2]
    (runs / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    return f"runs/{name}.yaml"


def run_with_env(cluster, config: str, run_id: str, what: str, *extra: str) -> tuple[Path, dict]:
    env, runs = cluster
    t0 = time.monotonic()
    proc = cluster_sh(env, "submit", config, "--run-id", run_id, "--env", ENV, *extra)
    print(f"{what} on the share-nothing cluster: {time.monotonic() - t0:.0f} s")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return runs / run_id, json.loads((runs / run_id / "summary.json").read_text())


def assert_on_workers(run_dir: Path, tasks: list[str]) -> None:
    placed = {r["task"]: r["node"] for r in read_jsonl(run_dir / "tasks.jsonl")}
    assert sorted(placed) == sorted(tasks) and set(placed.values()) <= set(WORKERS), placed
    assert len(set(placed.values())) == len(tasks), placed
    assert sorted(p.stem for p in (run_dir / "nodes").glob("*.csv")) == sorted(tasks)  # sampled, collected


def test_data_parallel_from_parquet_on_glusterfs(cluster) -> None:
    _, runs = cluster
    config = config_copy(runs, "sn-dp", "quickstart.yaml", epochs=2, parquet=True)
    run_dir, summary = run_with_env(cluster, config, "sn-dp", "data parallel from Parquet")
    assert summary["final"]["ps_version"] >= 1
    assert summary["data_distribution_check"]["consistent"], summary["data_distribution_check"]
    assert summary["train_samples"] + summary["validation_samples"] == 1600
    assert_on_workers(run_dir, ["ps-0", "worker-0", "worker-1"])


def test_predict_on_the_workers(cluster) -> None:
    t0 = time.monotonic()
    proc = in_master("ddl", "predict", "runs/sn-dp", "--data", DATA, "--out", "/shared/predictions",
                     "--env", ENV)
    print(f"ddl predict on the share-nothing cluster: {time.monotonic() - t0:.0f} s")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "scored 1600 rows" in proc.stdout, proc.stdout
    rows = in_master("python", "-c", "import pyarrow.parquet as pq; t = pq.read_table('/shared/predictions'); "
                     "print(t.num_rows, sorted(set(t.column('row').to_pylist())) == list(range(1600)))")
    assert rows.stdout.split() == ["1600", "True"], rows.stdout + rows.stderr


def test_model_parallel_under_spark_submit_on_the_workers(cluster) -> None:
    """The driver under spark-submit (``--archives env.tar.gz#environment``), as a user would start it by hand."""
    _, runs = cluster
    config = config_copy(runs, "sn-mp", "landcover.yaml", epochs=2)
    run_dir, summary = run_with_env(cluster, config, "sn-mp", "land-cover model parallel", "--spark-submit")
    assert summary["placement_check"]["consistent"], summary["placement_check"]["problems"]
    assert_on_workers(run_dir, ["ps-0", "worker-0", "worker-1", "worker-2"])
