"""End to end on a real Spark standalone cluster started by the toolkit: TFoS + TensorFlow + our PS.

Each test runs ``ddl run`` as a user would (a subprocess), on tiny data: 1 PS + 2 workers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from ddl_commodity.cluster.local import tagged_processes
from ddl_commodity.data.rdd import index_digest, shard_assignment
from ddl_commodity.data.redshift import load_redshift_h5
from ddl_commodity.data.split import train_validation_split
from ddl_commodity.runs import read_jsonl
from tests.integration.test_single_machine import board_scalars

pytestmark = pytest.mark.cluster

SEED = 11


def tiny_config(tmp_path: Path, **training: object) -> dict:
    return {
        "experiment": "redshift",
        "name": "it",
        "seed": SEED,
        "data": {"samples": 240, "validation_fraction": 0.1, "cache_dir": str(tmp_path / "data")},
        "model": {"filters": [2, 2], "dropout": 0.0},
        "training": {"mode": "data_parallel", "workers": 2, "epochs": 3, "batch_size": 16,
                     "learning_rate": 0.003, **training},
        "ps": {"s": 2, "staleness": "inverse"},
        "output": {"runs_dir": str(tmp_path / "runs")},
    }


def ddl_run(tmp_path: Path, cfg: dict, timeout: float = 420, *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    path = tmp_path / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "ddl_commodity.cli", "run", str(path), "--run-id", cfg["name"], "--no-progress",
         *extra], capture_output=True, text=True, timeout=timeout, check=False,
    )
    return proc, tmp_path / "runs" / cfg["name"]


def expected_digests(data_file: Path, seed: int, validation_fraction: float, workers: int,
                     distribution: str) -> dict[int, str]:
    """Recompute, from the data file alone, which rows each shard must hold."""
    n = len(load_redshift_h5(data_file).label)
    train, _ = train_validation_split(n, validation_fraction, seed)
    if distribution == "same":
        return dict.fromkeys(range(workers), index_digest(train))
    shards = shard_assignment(n, train, workers, seed)
    assert not set(np.flatnonzero(shards == 0)) & set(np.flatnonzero(shards == 1))
    return {m: index_digest(np.flatnonzero(shards == m)) for m in range(workers)}


def worker_records(run_dir: Path) -> dict[str, list[dict]]:
    return {p.stem: read_jsonl(p) for p in sorted((run_dir / "workers").glob("worker-*.jsonl"))}


def run_processes(root: Path | None) -> list:
    """Tagged processes of the clusters started under ``root`` (their SPARK_LOG_DIR lies there); all when None.

    Another test session may run its own cluster on the machine at the same time: only ours count.
    """
    found = []
    for proc in tagged_processes():
        try:
            if root is None or proc.environ().get("SPARK_LOG_DIR", "").startswith(str(root)):
                found.append(proc)
        except Exception:  # exited meanwhile
            continue
    return found


def heartbeat_gaps(run_dir: Path) -> str:
    """The run's ``heartbeats.json``, for a failure's message: which nodes went quiet, when, for how long."""
    path = run_dir / "heartbeats.json"
    return f"\nheartbeats.json: {path.read_text()}" if path.is_file() else "\n(no heartbeats.json)"


def assert_running(proc: subprocess.Popen, deadline: float, what: str) -> None:
    """Fail saying ``what`` (with the end of the run's stderr) if ``proc`` has ended or ``deadline`` (monotonic)
    has passed. A run still going is stopped first (SIGTERM stops a run and all it started): a stuck run must
    neither outlive its test nor hang the failure's report."""
    if proc.poll() is None and time.monotonic() < deadline:
        return
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    pytest.fail(f"{what} (exit {proc.returncode}): {(err or '')[-2000:]}")


def assert_no_leftover_processes(root: Path | None = None) -> None:
    deadline = time.monotonic() + 15
    while run_processes(root) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = run_processes(root)
    assert not left, [p.cmdline()[:3] for p in left]


def check_quiet_console(stdout: str, stderr: str, run_dir: Path) -> None:
    """What ``ddl run`` of a data-parallel redshift run prints: progress and results only; TensorFlow's and
    absl's start-up lines are in job.log, and the driver loads no TensorFlow (it logs this line as it loads):
    the PS node made the final model."""
    assert stderr == "", stderr
    assert not [line for line in stdout.splitlines() if "oneDNN" in line or "absl" in line], stdout
    assert "oneDNN" not in (run_dir / "job.log").read_text()
    assert "held-out |dz|/(1+z): median" in stdout


def check_data_parallel_run(run_dir: Path, data_file: Path) -> dict:
    """What a succeeded data-parallel redshift run shows, read from its directory: index digests that prove
    its data distribution, eq. 5.1's staleness on every PS update, the PS versions s and M imply, learning
    workers, its curves, model and TensorBoard events. Returns its summary."""
    from ddl_commodity.experiments.registry import load

    _, cfg = load(run_dir / "config.yaml")
    t, s, m = cfg.training, cfg.ps.s, cfg.training.workers
    summary = json.loads((run_dir / "summary.json").read_text())
    assert json.loads((run_dir / "status.json").read_text())["state"] == "succeeded"

    # The digests prove the mode: every worker epoch trained on exactly the rows of its shard.
    expected = expected_digests(data_file, cfg.seed, cfg.data.validation_fraction, m, t.data_distribution)
    workers = worker_records(run_dir)
    assert sorted(workers) == [f"worker-{i}" for i in range(m)]
    epochs = [r for recs in workers.values() for r in recs]
    assert len(epochs) == m * t.epochs
    for r in epochs:
        assert r["index_digest"] == expected[r["shard"]], r
    if t.data_distribution == "disjoint":
        for feed_epoch in range(t.epochs):
            assert sorted(r["shard"] for r in epochs if r["feed_epoch"] == feed_epoch) == list(range(m))
    assert summary["data_distribution_check"]["consistent"], summary["data_distribution_check"]
    applied = check_ps_updates(run_dir, summary, epochs, s, m, t.epochs)

    # Training works: every worker's loss falls.
    for recs in workers.values():
        recs.sort(key=lambda r: r["epoch"])
        assert recs[-1]["loss"] < recs[0]["loss"], recs
    assert (run_dir / "curves.png").stat().st_size > 1000
    assert (run_dir / "model.keras").is_file()
    assert summary["final"]["val_dz_median"] >= 0

    # TensorBoard: every worker's epochs and every PS update, as the driver received them.
    board = board_scalars(run_dir / "tensorboard" / "worker-0")
    assert [e.step for e in board["global_validation/dz_median"]] == sorted(r["epoch"] for r in workers["worker-0"])
    ps_board = board_scalars(run_dir / "tensorboard" / "ps")
    assert sorted(e.value for e in ps_board["ps/tau"]) == sorted(float(u["tau"]) for u in applied)
    return summary


def check_ps_updates(run_dir: Path, summary: dict, epochs: list[dict], s: int, m: int, n_epochs: int) -> list[dict]:
    """The PS applied every update with tau = (version before the apply) - (base version of the update), and
    the versions that s and M imply. Returns the applied updates."""
    updates = read_jsonl(run_dir / "ps.jsonl")
    applied = [u for u in updates if u.get("event", "applied") == "applied"]
    assert len(applied) == len(epochs)
    for u in applied:
        assert u["tau"] == u["applied_version"] - 1 - u["base_version"], u
        assert u["lambda"] == pytest.approx(1.0 / (1.0 + u["tau"]))
    if s == m:  # synchronous: the M updates of an aggregate start from the same version
        assert all(u["tau"] == 0 for u in applied)
        assert summary["final"]["ps_version"] == n_epochs
        # Every worker adopted the same global model every epoch, so they score it identically.
        by_version: dict[int, list[float]] = {}
        for r in epochs:
            by_version.setdefault(r["ps_version"], []).append(r["global_val_loss"])
        assert sorted(by_version) == list(range(1, n_epochs + 1))
        for losses in by_version.values():
            assert len(losses) == m and max(losses) == pytest.approx(min(losses), rel=1e-5), by_version
        final_errors = {r["global_val_dz_nmad"] for r in epochs if r["ps_version"] == summary["final"]["ps_version"]}
        assert len(final_errors) == 1  # ... and get the same redshift errors from it
        # The saved final model is that last global model, scored the same way.
        last = by_version[summary["final"]["ps_version"]][0]
        assert summary["final"]["val_loss"] == pytest.approx(last, rel=1e-5)
        assert summary["final"]["val_dz_nmad"] == pytest.approx(final_errors.pop(), rel=1e-5)
    else:
        assert summary["final"]["ps_version"] == len({u["applied_version"] for u in applied})
        if s == 1:  # every push applied alone: a version each
            assert summary["final"]["ps_version"] == len(applied)
        if s > 1:  # each epoch's last push joins the next epoch's first, one version stale
            assert max(u["tau"] for u in applied) >= 1, applied
    for r in epochs:
        assert 0 <= r["global_val_accuracy"] <= 1 and r["global_val_loss"] > 0, r
    return applied


@pytest.mark.parametrize("kind", ["exception"])  # "sigkill": in test_faults.py
def test_failing_worker_ends_the_run_fast(tmp_path: Path, kind: str) -> None:
    cfg = tiny_config(tmp_path, data_distribution="disjoint", epochs=4)
    cfg["name"] = f"it-{kind}"
    cfg["faults"] = {"worker": 1, "epoch": 2, "kind": kind}
    proc, run_dir = ddl_run(tmp_path, cfg, 420, "--spark-submit")  # the driver under spark-submit: the same ending
    finished = time.time()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    if kind == "exception":  # the node's exception on the console, its whole traceback in the run's status
        assert "node worker-1" in proc.stderr and "fault injection: worker 1 fails at epoch 2" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "at org.apache.spark" not in proc.stdout, proc.stdout
        status = json.loads((run_dir / "status.json").read_text())
        assert "Traceback" in status["error"] and "inject_fault" in status["error"], status
        assert [(f["node"], f["cause"]) for f in status["failures"]] == [("worker-1", "raised")], status
    else:  # a killed process says nothing: its silence is detected
        assert "node worker-1 stopped responding" in proc.stderr
    assert not (run_dir / "summary.json").exists()
    assert json.loads((run_dir / "status.json").read_text())["state"] == "failed"
    # The fault fires right after worker 1's first epoch record; the whole run must be over within 60 s.
    first_epoch_done = max(r["time"] for r in read_jsonl(run_dir / "workers" / "worker-1.jsonl"))
    assert finished - first_epoch_done < 60, finished - first_epoch_done
    assert_no_leftover_processes(tmp_path)


def test_killed_ps_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, data_distribution="disjoint", epochs=4)
    cfg["name"] = "it-resume"
    cfg["ps"]["checkpoint_every"] = 1
    cfg["faults"] = {"ps_kill_at_version": 3}  # killed after applying version 3, before checkpointing it
    proc, run_dir = ddl_run(tmp_path, cfg)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "node ps-0 (the parameter server) died" in proc.stderr, proc.stderr
    assert (run_dir / "checkpoints" / "ps.npz").is_file() and not (run_dir / "summary.json").exists()
    assert_no_leftover_processes(tmp_path)

    resume = subprocess.run(
        [sys.executable, "-m", "ddl_commodity.cli", "run", "--resume", str(run_dir), "--no-progress"],
        capture_output=True, text=True, timeout=420, check=False,
    )
    assert resume.returncode == 0, resume.stdout + resume.stderr
    assert "resuming" in resume.stdout and "from PS version 2" in resume.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["resumed"]["from_version"] == 2
    assert summary["resumed"]["versions_lost"] == 1  # at most K = checkpoint_every = 1
    assert summary["final"]["ps_version"] == cfg["training"]["epochs"]  # s = M: one version per feed epoch
    for recs in worker_records(run_dir).values():
        assert sorted(r["epoch"] for r in recs) == [1, 2, 3, 4]
    events = read_jsonl(run_dir / "ps.jsonl")
    assert [e["event"] for e in events].count("resumed") == 1
    versions = sorted(e["applied_version"] for e in events if e["event"] == "applied")
    assert versions == [1, 1, 2, 2, 3, 3, 4, 4]
    assert summary["data_distribution_check"]["consistent"], summary["data_distribution_check"]
    assert_no_leftover_processes(tmp_path)


def test_lost_executor_ends_the_run_fast(tmp_path: Path) -> None:
    """SIGKILL one Spark executor JVM from outside, as a crashed machine would, once training is under way."""
    import signal

    cfg = tiny_config(tmp_path, data_distribution="disjoint", epochs=6)
    cfg["name"] = "it-executor"
    path = tmp_path / "it-executor.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ddl_commodity.cli", "run", str(path), "--run-id", "it-executor", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    partial = tmp_path / "runs" / "it-executor" / "workers" / "worker-0.jsonl.partial"
    deadline = time.monotonic() + 300
    while not (partial.exists() and partial.read_text().strip()):
        assert_running(proc, deadline, "the run never reached its first epoch")
        time.sleep(0.5)
    executors = [p for p in run_processes(tmp_path) if "CoarseGrainedExecutorBackend" in " ".join(p.cmdline())]
    assert len(executors) == 3
    cmdline = executors[-1].cmdline()
    executor_id = cmdline[cmdline.index("--executor-id") + 1]
    executors[-1].send_signal(signal.SIGKILL)
    killed = time.time()
    run_dir = tmp_path / "runs" / "it-executor"
    try:
        _, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the run went on 120 s after executor {executor_id} was killed\n{run_diagnostics(run_dir)}")
    assert proc.returncode == 1, stderr
    assert time.time() - killed < 60
    assert "distributed run failed" in stderr
    tasks = read_jsonl(run_dir / "tasks.jsonl") or read_jsonl(run_dir / "tasks.jsonl.partial")
    victim = next(r["task"] for r in tasks if str(r["executor"]) == executor_id)
    assert f"node {victim} " in stderr, (victim, stderr)  # the node whose executor died, whichever way it showed
    assert not (run_dir / "summary.json").exists()
    assert_no_leftover_processes(tmp_path)


def run_diagnostics(run_dir: Path, lines: int = 40) -> str:
    """The ends of a run's logs, for a test that gave up waiting on it."""
    parts = []
    for name in ("status.json", "job.log", "driver.log"):
        path = run_dir / name
        if path.exists():
            parts.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
    return "\n".join(parts)
