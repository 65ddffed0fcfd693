"""A run's driver in the calling process: a SparkContext on a JVM of its own, owned from start to end.

PySpark starts one JVM per process and keeps it; a run needs its own: its driver memory and JVM options are
fixed when the JVM starts, its log belongs in the run's ``driver.log``, and on an isolated cluster it belongs
to the master node's control group. :class:`DriverJvm` starts that JVM for the run and ends it afterwards,
within a grace period: Spark's own stop waits for the executors of a hung or cut-off node (a minute and more).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ddl_commodity.errors import UserInputError
from ddl_commodity.resources.cgroups import NodeGroup

#: How long the SparkContext may take to stop before its JVM is ended.
STOP_GRACE_S = 10.0


class DriverJvm:
    """A :class:`~ddl_commodity.runtime.session.SparkSource` that starts a fresh driver JVM for one run.

    Args:
        master: the Spark master URL.
        driver_memory: the driver JVM's heap (``spark.driver.memory``).
        log: the file the JVM's output goes to.
        host: the address executors reach the driver at (``spark.driver.host``; default: Spark's choice).
        group: the control group the JVM runs in (the master node's, like a driver on the master's PC).
    """

    def __init__(self, master: str, driver_memory: str, log: Path, host: str | None = None,
                 group: NodeGroup | None = None) -> None:
        self.master, self.driver_memory, self.log = master, driver_memory, Path(log)
        self.host, self.group = host, group
        self._gateway: Any = None

    def open(self, conf: Any) -> Any:
        from pyspark import SparkContext
        from pyspark.java_gateway import launch_gateway

        from ddl_commodity.runtime.jvm import jvm_options

        if SparkContext._active_spark_context is not None:
            raise UserInputError("a SparkContext is already running in this process: pass it to run(..., "
                                 "spark=...) to run on it, or stop it first")
        conf.setMaster(self.master)
        conf.set("spark.driver.memory", self.driver_memory)
        # A driver out of heap kills Spark's scheduler thread and leaves the run waiting for ever: exit instead.
        conf.set("spark.driver.extraJavaOptions", f"{jvm_options()} -XX:+ExitOnOutOfMemoryError")
        if self.host:
            conf.set("spark.driver.host", self.host).set("spark.driver.bindAddress", self.host)
        with stderr_to(self.log):
            self._gateway = launch_gateway(conf)
        try:
            if self.group is not None:
                self.group.add(self._gateway.proc.pid)
            sc = SparkContext(conf=conf, gateway=self._gateway)
        except BaseException:  # a context that did not come up (or Ctrl-C): its JVM goes with it
            self._end_jvm()
            raise
        # PySpark takes the executors' Python from PYSPARK_PYTHON alone ("python3" without it): this one's.
        sc.pythonExec = os.environ.get("PYSPARK_PYTHON", sys.executable)
        return sc

    def close(self, sc: Any) -> None:
        stopper = threading.Thread(target=sc.stop, name="ddl-spark-stop", daemon=True)
        stopper.start()
        stopper.join(STOP_GRACE_S)
        self._end_jvm()
        stopper.join(5.0)  # a late stop must not clear the next run's context

    def _end_jvm(self) -> None:
        """End the JVM and forget it, so that the next run in this process starts one of its own."""
        from pyspark import SparkContext

        gateway, self._gateway = self._gateway, None
        if gateway is None:
            return
        with contextlib.suppress(Exception):
            gateway.shutdown()
        proc = gateway.proc
        with contextlib.suppress(OSError):
            proc.stdin.close()  # PySpark's JVM exits when this pipe closes
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with SparkContext._lock:
            SparkContext._gateway = None
            SparkContext._jvm = None
            SparkContext._active_spark_context = None


@contextlib.contextmanager
def fd2_to(fd: int) -> Iterator[None]:
    """File descriptor 2 is ``fd`` inside the block (what child processes started in it inherit)."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(fd, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """File descriptor 2 appends to ``path`` inside the block."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        with fd2_to(fd):
            yield
    finally:
        os.close(fd)
