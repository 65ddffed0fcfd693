"""Faults on a real Spark standalone cluster (TFoS + TensorFlow + our PS), run as a user would: ``ddl run``.

A killed worker ends the run fast, every time, with nothing left running (with
``training.tolerate_worker_loss`` the run survives it instead: ``test_node_resources``, beside a frozen
worker); a worker that exhausts its memory is named; a dead PS is named directly.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ddl_commodity.runs import read_jsonl
from tests.integration.test_redshift_cluster import (
    assert_no_leftover_processes,
    assert_running,
    ddl_run,
    heartbeat_gaps,
    tiny_config,
)

pytestmark = pytest.mark.cluster


def fault_config(tmp_path: Path, name: str, **training: object) -> dict:
    cfg = tiny_config(tmp_path, **{"data_distribution": "disjoint", "epochs": 4, **training})
    cfg["name"] = name
    cfg["cluster"] = {"heartbeat_timeout_s": 8}  # silence is the only sign of a killed process: keep it short
    return cfg


def seconds_from_fault_to(finished: float, run_dir: Path) -> float:
    """The fault fires right after worker 1's first epoch record: time from that record to ``finished``."""
    return finished - max(r["time"] for r in read_jsonl(run_dir / "workers" / "worker-1.jsonl"))


def test_killed_worker_fails_fast(tmp_path: Path) -> None:
    """Here and from Python below: exit 1 within 60 s of the SIGKILL, no process of the run left."""
    cfg = fault_config(tmp_path, "kill")
    cfg["faults"] = {"worker": 1, "epoch": 2, "kind": "sigkill"}
    proc, run_dir = ddl_run(tmp_path, cfg)
    finished = time.time()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "node worker-1 stopped responding" in proc.stderr, proc.stderr + heartbeat_gaps(run_dir)
    # dead, not hung: the driver saw its pid
    assert "its process is gone (killed" in proc.stderr, proc.stderr + heartbeat_gaps(run_dir)
    assert json.loads((run_dir / "status.json").read_text())["state"] == "failed"
    assert not (run_dir / "summary.json").exists()
    assert seconds_from_fault_to(finished, run_dir) < 60
    assert_no_leftover_processes(tmp_path)


#: A plain Python process running a config through the library call; a failure printed as JSON.
PYTHON_RUN = """
import json, sys
import ddl_commodity
from ddl_commodity.errors import RunFailed
try:
    ddl_commodity.run(sys.argv[1], run_id=sys.argv[2], progress=False)
except RunFailed as err:
    print(json.dumps({"failures": [f.to_dict() for f in err.failures], "run_dir": str(err.run_dir)}))
    sys.exit(1)
"""


def test_killed_worker_from_python_raises_run_failed_naming_it(tmp_path: Path) -> None:
    """The same fault through ``ddl_commodity.run`` in a plain ``python`` process (embedded cluster): a
    ``RunFailed`` whose first failure is worker-1, silent because its process is gone."""
    import subprocess
    import sys

    import yaml

    cfg = fault_config(tmp_path, "kill-python")
    cfg["faults"] = {"worker": 1, "epoch": 2, "kind": "sigkill"}
    path = tmp_path / "kill-python.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-c", PYTHON_RUN, str(path), "kill-python"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=420, check=False)
    finished = time.time()
    run_dir = tmp_path / "runs" / "kill-python"
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    failed = json.loads(proc.stdout.strip().splitlines()[-1])
    first = failed["failures"][0]
    assert (first["node"], first["cause"]) == ("worker-1", "silent"), (failed, heartbeat_gaps(run_dir))
    assert "its process is gone (killed" in first["detail"], first
    assert failed["run_dir"] == str(run_dir)
    assert json.loads((run_dir / "status.json").read_text())["failures"] == failed["failures"][:1]
    assert seconds_from_fault_to(finished, run_dir) < 60
    assert_no_leftover_processes(tmp_path)


def test_out_of_memory_worker_is_named(tmp_path: Path) -> None:
    """A worker allocating until the kernel kills it (limit on that one process): exit 1 within 60 s, named."""
    cfg = fault_config(tmp_path, "oom")
    cfg["faults"] = {"worker": 1, "epoch": 2, "kind": "oom"}
    proc, run_dir = ddl_run(tmp_path, cfg)
    finished = time.time()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "worker-1" in proc.stderr and ("out of memory" in proc.stderr or "MemoryError" in proc.stderr)
    assert seconds_from_fault_to(finished, run_dir) < 60
    assert_no_leftover_processes(tmp_path)


def test_sigterm_stops_the_run_and_everything_it_started(tmp_path: Path) -> None:
    """`kill` (or a CI timeout) of `ddl run` mid-training: exit 130, run marked failed, nothing left running."""
    import signal
    import subprocess
    import sys

    import psutil
    import yaml

    cfg = fault_config(tmp_path, "sigterm", epochs=40)
    path = tmp_path / "sigterm.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "ddl_commodity.cli", "run", str(path), "--run-id", "sigterm",
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "runs" / "sigterm"
    deadline = time.monotonic() + 300
    while not (run_dir / "cluster_info.json").exists():  # TFoS reserved its nodes: training is under way
        assert_running(proc, deadline, "TFoS never reserved the nodes")
        time.sleep(0.5)
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and "interrupted (SIGTERM)" in status["error"]
    assert_no_leftover_processes(tmp_path)

    def ours() -> list[str]:  # also the untagged ones: spark-submit's JVM and the Python driver it started
        found = []
        for p in psutil.process_iter(["pid", "cmdline"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if str(tmp_path) in cmd and p.pid != proc.pid:
                found.append(cmd[:200])
        return found

    deadline = time.monotonic() + 30
    while ours() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not ours()
