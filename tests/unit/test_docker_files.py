"""docker/: the Dockerfile and the five-node compose file, checked as far as this machine allows.

The structure is checked with pyyaml; ``docker compose config`` is tried and skipped with the reason where
the compose plugin is missing. Nothing here builds an image or starts a container:
``tests/integration/test_docker_cluster.py`` does, as one group of the suite's parallel part.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ddl_commodity.experiments.registry import load_config

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"


@pytest.fixture(scope="module")
def compose() -> dict:
    # pyyaml resolves the `<<: *node` merge keys, as compose does.
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def test_compose_has_a_master_and_four_workers(compose: dict) -> None:
    services = compose["services"]
    assert sorted(services) == ["master", "worker1", "worker2", "worker3", "worker4"]
    master_cmd = services["master"]["command"]
    assert "org.apache.spark.deploy.master.Master" in master_cmd
    assert master_cmd[master_cmd.index("--host") + 1] == "master"
    assert master_cmd[master_cmd.index("--port") + 1] == "7077"
    for name in ("worker1", "worker2", "worker3", "worker4"):
        cmd = services[name]["command"]
        assert "org.apache.spark.deploy.worker.Worker" in cmd
        assert cmd[-1] == "spark://master:7077"
        assert cmd[cmd.index("--cores") + 1] == "1"
        assert services[name]["depends_on"] == ["master"]
        assert services[name]["hostname"] == name


def test_every_node_has_one_core_and_2gb(compose: dict) -> None:
    for name, svc in compose["services"].items():
        assert float(svc["cpus"]) == 1.0, name
        assert svc["mem_limit"] == "2g", name
        assert svc["networks"] == ["cluster"], name
        assert svc["image"] == "ddl-commodity:latest", name
    # Executors get 1 GB of the 2 GB: the configs' executor_memory must fit into what a worker offers.
    worker_cmd = compose["services"]["worker1"]["command"]
    offered = worker_cmd[worker_cmd.index("--memory") + 1]
    assert offered == load_config(DOCKER / "configs" / "quickstart.yaml").cluster.executor_memory


def test_compose_paths_exist(compose: dict) -> None:
    build = compose["services"]["master"]["build"]
    context = (DOCKER / build["context"]).resolve()
    assert context == REPO
    assert (context / build["dockerfile"]).is_file()
    for svc in compose["services"].values():
        for volume in svc["volumes"]:
            # ${VAR:-default}: a host directory the caller may choose, else one relative to docker/
            host = re.sub(r"^\$\{\w+:-([^}]*)\}", r"\1", volume).split(":", 1)[0]
            assert host.startswith(("./", "../")), volume
        assert any(v.endswith(":/opt/ddl/runs") for v in svc["volumes"])
    published = compose["services"]["master"]["ports"]
    assert all(p.startswith("127.0.0.1:") for p in published), "UI must not be published beyond loopback"
    assert compose["networks"]["cluster"]["driver"] == "bridge"


def test_dockerfile_python311_java17_and_the_package() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11", text, re.M) and re.search(r"^FROM \$\{BASE_IMAGE\}", text, re.M)
    assert "openjdk-17-jre-headless" in text
    # the dependencies' layer is keyed on pyproject.toml alone: a code change does not reinstall TensorFlow
    assert text.index("COPY pyproject.toml ./") < text.index("pip install -r") < text.index("COPY ddl_commodity")
    assert text.index("COPY ddl_commodity") < text.index("pip install --no-deps -e .")
    copied = re.findall(r"^COPY (.+) \S+$", text, re.M)
    for line in copied:
        for src in line.split():
            assert (REPO / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
    assert "SPARK_HOME=/opt/venv/lib/python3.11/site-packages/pyspark" in text


def test_docker_quickstart_config_is_valid_and_points_at_the_compose_master() -> None:
    cfg = load_config(DOCKER / "configs" / "quickstart.yaml")
    assert cfg.cluster.master == "spark://master:7077"
    assert cfg.training.workers + 1 <= 4, "1 PS + M workers must fit on the four worker containers"
    original = load_config(REPO / "configs" / "quickstart.yaml")
    assert cfg.training == original.training and cfg.model == original.model and cfg.ps == original.ps


def test_docker_compose_config_when_available() -> None:
    """The real validator, where the compose plugin exists (it needs no engine for `config`)."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on this machine")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30, check=False)
    if probe.returncode != 0:
        pytest.skip(f"`docker compose` is not available here: {(probe.stderr or probe.stdout).strip()[:200]}")
    proc = subprocess.run([docker, "compose", "-f", str(DOCKER / "docker-compose.yml"), "config", "--quiet"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def share_nothing() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.share-nothing.yml").read_text())


def test_share_nothing_workers_have_no_mounts_and_no_toolkit(share_nothing: dict) -> None:
    services = share_nothing["services"]
    assert sorted(services) == ["master", "storage", "worker1", "worker2", "worker3", "worker4"]
    for name in ("worker1", "worker2", "worker3", "worker4"):
        svc = services[name]
        assert "volumes" not in svc and "tmpfs" not in svc, name
        assert svc["image"] == "ddl-commodity-worker:latest", name
        assert svc["devices"] == ["/dev/fuse"] and "SYS_ADMIN" in svc["cap_add"], name  # its own FUSE mount
        assert float(svc["cpus"]) == 1.0 and svc["mem_limit"] == "2g", name
        assert svc["command"][-1] == "spark://master:7077", name
    assert "volumes" not in services["storage"]
    assert not share_nothing.get("volumes"), "no named (shared) volumes"
    assert all(p.startswith("127.0.0.1:") for p in services["master"]["ports"])


def test_share_nothing_images() -> None:
    text = (DOCKER / "share-nothing" / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+) AS (\w+)$", text, re.M)
    assert [name for _, name in stages] == ["toolkit", "storage", "worker", "master"]
    assert dict((name, image) for image, name in stages)["worker"] == "${BASE_IMAGE}"  # not the toolkit's
    worker = text[text.index("AS worker"):text.index("AS master")]
    assert "pip install" not in worker and "ddl_commodity" not in worker and "tensorflow" not in worker
    assert "glusterfs-client" in worker and "openjdk-17-jre-headless" in worker
    assert "glusterfs-server" in text[text.index("AS storage"):text.index("AS worker")]
    for script in ("storage.sh", "node.sh"):
        assert (DOCKER / "share-nothing" / script).stat().st_mode & 0o111, script
    cluster = (REPO / "scripts" / "docker-cluster.sh").read_text()
    assert "--share-nothing" in cluster and "docker/docker-compose.share-nothing.yml" in cluster
