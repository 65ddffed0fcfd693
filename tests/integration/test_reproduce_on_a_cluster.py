"""``ddl reproduce --master``: a reproduction's runs submitted to a standalone cluster that is already running
(``ddl cluster up``), as the thesis submitted its experiments to its one cluster of PCs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from ddl_commodity.cluster.local import read_state
from tests.integration.test_node_resources import ddl
from tests.integration.test_redshift_cluster import assert_no_leftover_processes, run_processes

pytestmark = pytest.mark.cluster

#: What a standing cluster's own processes run.
DAEMONS = ("org.apache.spark.deploy.master.Master", "org.apache.spark.deploy.worker.Worker")


def runs_left(root: Path) -> list[list[str]]:
    """Processes of the cluster under ``root`` other than its daemons (executors, Python workers), after
    giving them 15 s to end."""
    deadline = time.monotonic() + 15
    while True:
        left = [p.cmdline()[:3] for p in run_processes(root)
                if not any(daemon in " ".join(p.cmdline()) for daemon in DAEMONS)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.5)


def test_a_reproduction_runs_on_a_standing_cluster(tmp_path: Path) -> None:
    up = ddl("cluster", "up", "--nodes", "3", cwd=tmp_path)
    assert up.returncode == 0, up.stdout + up.stderr
    master = read_state(tmp_path / ".cluster").master_url
    try:
        proc = ddl("reproduce", "--scale", "smoke", "--only", "redshift-5k-same-1w", "--master", master,
                   "--out", str(tmp_path / "repro"), cwd=tmp_path, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        # The cluster outlives the run: only its daemons are left, the run's executors ended with it.
        assert runs_left(tmp_path) == []
        status = ddl("cluster", "status", cwd=tmp_path)
        assert status.returncode == 0 and "ALIVE" in status.stdout, status.stdout + status.stderr
    finally:
        down = ddl("cluster", "down", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert_no_leftover_processes(tmp_path)

    repro = tmp_path / "repro"
    config = yaml.safe_load((repro / "configs" / "redshift-5k-same-1w.yaml").read_text())
    assert config["cluster"]["master"] == master and "profile" not in config["cluster"]
    run_dir = repro / "runs" / "redshift-5k-same-1w"
    assert json.loads((run_dir / "status.json").read_text())["state"] == "succeeded"
    assert not (run_dir / "cluster").exists()  # no embedded cluster of its own
    state = json.loads((repro / "reproduce.json").read_text())
    assert state["invocations"][-1]["master"] == master
    assert f"the standing cluster {master}, no cluster profile" in (repro / "report" / "report.md").read_text()
