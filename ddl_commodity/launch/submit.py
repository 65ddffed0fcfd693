"""A run's driver under ``spark-submit`` in a child process, as a user on a real cluster would start it by hand
(``spark-submit --master URL jobs/experiment.py CONFIG``): ``run(..., spark_submit=True)``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ddl_commodity.errors import DdlError, RunFailed, failures_of
from ddl_commodity.launch.pack import EXECUTOR_PYTHON, executor_settings
from ddl_commodity.resources.cgroups import NodeGroup, enter_command
from ddl_commodity.runs import read_status

#: Once the job has marked its run failed, how long its driver may take to exit before it is ended.
DRIVER_GRACE_S = 10.0


def job_file() -> Path:
    """``jobs/experiment.py`` of this source checkout."""
    job = Path(__file__).resolve().parents[2] / "jobs" / "experiment.py"
    if not job.is_file():
        raise DdlError(f"{job} not found: spark-submit runs need a source checkout (pip install -e .)")
    return job


def submit(master: str, driver_memory: str, config_file: Path, run_dir: Path, resume: bool = False,
           progress: bool | None = None, group: NodeGroup | None = None, env: str | Path | None = None) -> None:
    """spark-submit ``jobs/experiment.py`` for ``config_file`` into ``run_dir`` and wait for it.

    Args:
        master: the Spark master URL.
        progress: live bars (``None``: if stdout is a terminal; the job's stdout is a pipe through the JVM).
        group: the control group the driver runs in (the master node's).
        env: an archive from ``ddl pack`` the executors run their Python from (``--archives ARCHIVE#environment``).

    Raises:
        RunFailed: with the failures the job recorded in the run's ``status.json``.
    """
    from ddl_commodity.runtime.jvm import jvm_options, spark_home

    env_vars = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable,
                    SPARK_HOME=str(spark_home()), TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [str(spark_home() / "bin" / "spark-submit"), "--master", master, "--driver-memory", driver_memory,
           # A driver out of heap kills Spark's scheduler thread and leaves the run waiting for ever: exit.
           "--driver-java-options", f"{jvm_options()} -XX:+ExitOnOutOfMemoryError",
           *_shipped(env), str(job_file()), str(config_file), "--run-dir", str(run_dir), "--errors-to-log"]
    if env is not None:
        env_vars["PYSPARK_PYTHON"] = EXECUTOR_PYTHON  # the executors'; the driver's is PYSPARK_DRIVER_PYTHON
    if resume:
        cmd.append("--resume")
    if progress or (progress is None and sys.stdout.isatty()):
        cmd.append("--progress")
    with open(run_dir / "driver.log", "ab") as log:
        returncode = _run_driver(enter_command(group, cmd), env_vars, log, run_dir)
    if returncode != 0:
        status = read_status(run_dir)
        ended = f"killed by signal {-returncode}" if returncode < 0 else f"exited with code {returncode}"
        raise RunFailed(str(status.get("error", f"the spark-submit driver {ended} before it recorded how the run "
                                                 f"ended (see {run_dir / 'driver.log'})")).removeprefix("RunFailed: "),
                        failures_of(status.get("failures")))


def _shipped(env: str | Path | None) -> list[str]:
    """spark-submit's options that ship ``env`` (an archive from ``ddl pack``) to the executors."""
    if env is None:
        return []
    settings = executor_settings(env)
    return ["--archives", settings.pop("spark.archives"),
            *(arg for key, value in settings.items() for arg in ("--conf", f"{key}={value}"))]


def _run_driver(cmd: list[str], env: dict, log, run_dir: Path) -> int:
    """Run ``cmd`` and wait; once the job has marked the run failed, give it ``DRIVER_GRACE_S`` to exit, then
    end it: Spark's own stop waits for the executors of a hung or cut-off node (60 s and more)."""
    started = time.time()
    failed_at = None
    # a session of its own: spark-submit's JVM and the Python driver it starts end together, as a group
    with subprocess.Popen(cmd, env=env, stdout=sys.stdout, stderr=log, start_new_session=True) as proc:
        try:
            while proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.5)
                if failed_at is None and _failed_since(run_dir, started):
                    failed_at = time.monotonic()
                if failed_at is not None and time.monotonic() - failed_at > DRIVER_GRACE_S:
                    _end_group(proc, grace_s=5.0)
        except BaseException:  # Ctrl-C, SIGTERM: the driver goes first, then the cluster
            _end_group(proc, grace_s=0.0)
            raise
    return 1 if failed_at is not None else proc.returncode


def _end_group(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM to the driver's process group, ``grace_s`` to exit, then SIGKILL to what is left of it (the
    Python driver may outlive spark-submit's JVM)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):  # no process of the group is left
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s if sig == signal.SIGTERM else 5.0)


def _failed_since(run_dir: Path, since: float) -> bool:
    """The run's status says failed, written after ``since`` (a resumed run's old status does not count)."""
    status = read_status(run_dir)
    return status.get("state") == "failed" and status.get("time", 0.0) >= since
