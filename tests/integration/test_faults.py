"""Faults on a real Spark standalone cluster (TFoS + TensorFlow + our PS), run as a user would: ``ddl run``.

Issue 5: a killed worker ends the run fast, every time, with nothing left running; with
``training.tolerate_worker_loss`` the run survives it instead; a worker that exhausts its memory is named;
a dead PS is named directly.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ddl_commodity.runs import read_jsonl
from tests.integration.test_redshift_cluster import (
    assert_no_leftover_processes,
    ddl_run,
    tiny_config,
    worker_records,
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


@pytest.mark.parametrize("repetition", [1, 2, 3])
def test_killed_worker_fails_fast_every_time(tmp_path: Path, repetition: int) -> None:
    """Three times in one session: exit 1 within 60 s of the SIGKILL, and no process of the run survives."""
    cfg = fault_config(tmp_path, f"kill-{repetition}")
    cfg["faults"] = {"worker": 1, "epoch": 2, "kind": "sigkill"}
    proc, run_dir = ddl_run(tmp_path, cfg)
    finished = time.time()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "node worker-1 stopped responding" in proc.stderr
    assert "its process is gone (killed" in proc.stderr, proc.stderr  # dead, not hung: the driver saw its pid
    assert json.loads((run_dir / "status.json").read_text())["state"] == "failed"
    assert not (run_dir / "summary.json").exists()
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


def test_run_survives_a_killed_worker_when_tolerated(tmp_path: Path) -> None:
    cfg = fault_config(tmp_path, "tolerate", tolerate_worker_loss=True, epochs=5)
    cfg["faults"] = {"worker": 1, "epoch": 2, "kind": "sigkill"}
    proc, run_dir = ddl_run(tmp_path, cfg)
    assert proc.returncode == 0, proc.stdout + proc.stderr + (run_dir / "driver.log").read_text()[-5000:]
    assert "worker-1 lost" in proc.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert json.loads((run_dir / "status.json").read_text())["state"] == "succeeded"

    # The loss is recorded, in the summary and as a PS event; s dropped to the one live worker.
    (loss,) = summary["worker_losses"]
    assert loss["worker"] == "worker-1" and loss["detected_by"] == "heartbeat silence"
    assert loss["s_effective"] == 1 and loss["executor_released"]
    events = read_jsonl(run_dir / "ps.jsonl")
    (lost,) = [e for e in events if e["event"] == "lost"]
    assert lost["worker"] == 1 and lost["s_effective"] == 1
    assert summary["final"]["ps"]["s_effective"] >= 1 and summary["final"]["ps"]["live_workers"] == 0

    # Every feed epoch was trained in full: worker-0 alone after the loss, the data re-dealt to it.
    live = summary["live_workers_per_epoch"]
    assert live["0"] == 2 and live[str(cfg["training"]["epochs"] - 1)] == 1
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
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
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
