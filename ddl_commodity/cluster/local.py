"""The embedded default: a Spark standalone cluster (1 master + N workers) started on this machine.

The pip ``pyspark`` wheel ships ``bin/spark-class`` but no ``sbin/start-*.sh``, so the daemons are started
directly. Every process we start carries ``DDL_CLUSTER_ID`` in its environment; Spark executors, PySpark
daemons and TFoS background processes inherit it. Tear-down kills by that tag rather than by process tree,
because PySpark's daemon moves itself into its own process group and orphans get reparented.

State lives in ``<state_dir>/cluster.json`` so ``ddl cluster status`` / ``ddl cluster down`` work from
another process and after a crash.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from ddl_commodity.errors import DdlError, UserInputError

CLUSTER_TAG = "DDL_CLUSTER_ID"
DEFAULT_STATE_DIR = Path(".cluster")


class ClusterError(DdlError):
    """The local cluster could not be started, or is in a state that forbids the request."""


class ClusterAlreadyRunning(UserInputError):
    """``up`` was asked for while a cluster recorded in the same state directory is alive."""


def spark_home() -> Path:
    """The Spark distribution inside the installed ``pyspark`` package."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def java_available() -> bool:
    return shutil.which("java") is not None or bool(os.environ.get("JAVA_HOME"))


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class LocalClusterState:
    """What ``cluster.json`` records about a started cluster."""

    cluster_id: str
    host: str
    master_url: str
    master_ui: str
    workers: int
    cores: int
    memory: str
    pids: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0
    log_dir: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> LocalClusterState:
        return cls(**json.loads(text))


def tagged_processes(cluster_id: str | None = None) -> list[psutil.Process]:
    """Processes started for a local cluster (any cluster when ``cluster_id`` is None)."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == me:
            continue
        try:
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        tag = env.get(CLUSTER_TAG)
        if tag and (cluster_id is None or tag == cluster_id):
            found.append(proc)
    return found


def kill_processes(procs: list[psutil.Process], grace_s: float = 5.0) -> int:
    """SIGTERM, wait up to ``grace_s``, then SIGKILL what is left. Returns how many were signalled."""
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=grace_s)
    return len(procs)


class LocalStandaloneCluster:
    """Start, inspect and stop a Spark standalone cluster of ``workers`` 1-core workers on one machine.

    Use as a context manager so the cluster goes away whatever happens::

        with LocalStandaloneCluster(workers=3) as cluster:
            subprocess.run(["spark-submit", "--master", cluster.master_url, ...])
    """

    def __init__(
        self,
        workers: int,
        cores: int = 1,
        memory: str = "2g",
        host: str = "127.0.0.1",
        state_dir: Path = DEFAULT_STATE_DIR,
        startup_timeout_s: float = 120.0,
    ) -> None:
        if workers < 1:
            raise ValueError("a cluster needs at least one worker")
        self.workers = workers
        self.cores = cores
        self.memory = memory
        self.host = host
        self.state_dir = Path(state_dir)
        self.startup_timeout_s = startup_timeout_s
        self.state: LocalClusterState | None = None

    @property
    def state_file(self) -> Path:
        return self.state_dir / "cluster.json"

    @property
    def master_url(self) -> str:
        if self.state is None:
            raise ClusterError("the cluster is not started")
        return self.state.master_url

    def __enter__(self) -> LocalStandaloneCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _env(self, cluster_id: str, log_dir: Path) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                CLUSTER_TAG: cluster_id,
                "SPARK_HOME": str(spark_home()),
                "SPARK_LOCAL_IP": self.host,
                "SPARK_LOG_DIR": str(log_dir),
                "PYSPARK_PYTHON": sys.executable,
            }
        )
        return env

    def _spawn(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> int:
        spark_class = spark_home() / "bin" / "spark-class"
        log = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            proc = subprocess.Popen(
                [str(spark_class), *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=str(log_dir),
            )
        finally:
            log.close()
        return proc.pid

    def start(self) -> LocalClusterState:
        """Start master and workers and wait until every worker is ALIVE in the master's view."""
        existing = read_state(self.state_dir)
        if existing is not None:
            if tagged_processes(existing.cluster_id):
                raise ClusterAlreadyRunning(
                    f"a local cluster is already running ({existing.master_url}, state in {self.state_file}); "
                    "stop it with `ddl cluster down` or use it with `cluster.master: "
                    f"{existing.master_url}`"
                )
            self.state_file.unlink(missing_ok=True)  # leftover of a crashed run: nothing alive
        if not java_available():
            raise ClusterError("no Java runtime found (java on PATH or JAVA_HOME); run scripts/setup.sh")

        cluster_id = uuid.uuid4().hex[:12]
        log_dir = (self.state_dir / f"logs-{cluster_id}").resolve()
        log_dir.mkdir(parents=True, exist_ok=True)
        env = self._env(cluster_id, log_dir)
        master_port, ui_port = free_port(self.host), free_port(self.host)
        state = LocalClusterState(
            cluster_id=cluster_id,
            host=self.host,
            master_url=f"spark://{self.host}:{master_port}",
            master_ui=f"http://{self.host}:{ui_port}",
            workers=self.workers,
            cores=self.cores,
            memory=self.memory,
            started_at=time.time(),
            log_dir=str(log_dir),
        )
        self.state = state
        self._write_state()
        try:
            state.pids["master"] = self._spawn(
                "master",
                ["org.apache.spark.deploy.master.Master", "--host", self.host,
                 "--port", str(master_port), "--webui-port", str(ui_port)],
                env, log_dir,
            )
            self._write_state()
            self._wait_for_master()
            for i in range(self.workers):
                worker_dir = log_dir / f"worker-{i}"
                worker_dir.mkdir(exist_ok=True)
                state.pids[f"worker-{i}"] = self._spawn(
                    f"worker-{i}",
                    ["org.apache.spark.deploy.worker.Worker", "--host", self.host,
                     "--cores", str(self.cores), "--memory", self.memory,
                     "--webui-port", str(free_port(self.host)), "--work-dir", str(worker_dir),
                     state.master_url],
                    env, log_dir,
                )
            self._write_state()
            self._wait_for_workers()
        except BaseException:
            self.stop()
            raise
        return state

    def _write_state(self) -> None:
        assert self.state is not None
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".json.tmp")
        tmp.write_text(self.state.to_json())
        os.replace(tmp, self.state_file)

    def master_status(self) -> dict:
        """The master's JSON status page (workers, their state, running applications)."""
        assert self.state is not None
        return master_status(self.state)

    def _deadline_loop(self, what: str):
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            yield
            time.sleep(0.5)
        raise ClusterError(f"{what} within {self.startup_timeout_s:.0f} s; logs in {self.state.log_dir}")

    def _wait_for_master(self) -> None:
        for _ in self._deadline_loop("the Spark master did not come up"):
            self._check_alive("master")
            with contextlib.suppress(OSError, ValueError):
                self.master_status()
                return

    def _wait_for_workers(self) -> None:
        for _ in self._deadline_loop(f"{self.workers} Spark workers did not register"):
            for name in self.state.pids:
                self._check_alive(name)
            with contextlib.suppress(OSError, ValueError):
                if alive_worker_count(self.master_status()) >= self.workers:
                    return

    def _check_alive(self, name: str) -> None:
        pid = self.state.pids[name]
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            log = Path(self.state.log_dir) / f"{name}.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise ClusterError(f"Spark {name} exited during start-up; last log lines:\n{tail}")

    def stop(self) -> int:
        """Kill every process of this cluster; idempotent. Returns how many processes were stopped."""
        state = self.state or read_state(self.state_dir)
        if state is None:
            return 0
        n = kill_processes(tagged_processes(state.cluster_id))
        self.state_file.unlink(missing_ok=True)
        self.state = None
        return n


def read_state(state_dir: Path = DEFAULT_STATE_DIR) -> LocalClusterState | None:
    path = Path(state_dir) / "cluster.json"
    if not path.is_file():
        return None
    try:
        return LocalClusterState.from_json(path.read_text())
    except (ValueError, TypeError):
        return None


def master_status(state: LocalClusterState, timeout_s: float = 2.0) -> dict:
    with urllib.request.urlopen(f"{state.master_ui}/json/", timeout=timeout_s) as resp:
        return json.loads(resp.read())


def alive_worker_count(status: dict) -> int:
    return sum(1 for w in status.get("workers", []) if w.get("state") == "ALIVE")


def stop_recorded_cluster(state_dir: Path = DEFAULT_STATE_DIR) -> int:
    """``ddl cluster down``: stop the cluster recorded in ``state_dir``, orphans included. Idempotent."""
    return LocalStandaloneCluster(workers=1, state_dir=state_dir).stop()
