"""Fail fast: turn a node's failure into the end of the run within seconds (TFoS alone would hang).

Shared by every experiment driver: :class:`Watchdog` watches the driver's collector (exceptions reported by
nodes, nodes that went silent) and TFoS's own status, and cancels the Spark jobs on the first sign;
:func:`require_executors` refuses to start TFoS with fewer executors than TF nodes.
"""

from __future__ import annotations

import logging
import threading
import time

from ddl_commodity.errors import UserInputError

log = logging.getLogger(__name__)


def require_executors(sc, cfg) -> None:
    """Refuse to start TFoS with fewer executors than TF nodes: it would wait for its reservation timeout."""
    deadline = time.monotonic() + cfg.cluster.startup_timeout_s
    while True:
        executors = sc._jsc.sc().getExecutorMemoryStatus().size() - 1  # minus the driver
        if executors >= cfg.tf_nodes:
            return
        if time.monotonic() > deadline:
            raise UserInputError(
                f"{cfg.tf_nodes} TF nodes (1 PS + {cfg.training.workers} workers) need {cfg.tf_nodes} executors, "
                f"but the cluster gave {executors} within {cfg.cluster.startup_timeout_s:.0f} s"
            )
        time.sleep(0.5)


def spark_error(text: str) -> str:
    """The first Python traceback inside a Py4J error text, without the Java stack around it."""
    start = text.find("Traceback (most recent call last)")
    if start < 0:
        return text.splitlines()[0] if text else "unknown error"
    lines = []
    for line in text[start:].splitlines():
        if line.startswith("\tat ") or line.lstrip().startswith("at org.apache"):
            break
        lines.append(line)
    return "\n".join(lines[:80])


class Watchdog:
    """Turns a node's failure into an immediate end of the Spark jobs (fail fast instead of TFoS's hang)."""

    def __init__(self, sc, collector, tf_status: dict, heartbeat_timeout_s: float) -> None:
        self._sc, self._collector, self._tf_status = sc, collector, tf_status
        self._heartbeat_timeout_s = heartbeat_timeout_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ddl-watchdog", daemon=True)
        self._message = ""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def failure_message(self) -> str:
        f = self._collector.first_failure
        if f is not None:
            return f"node {f.message}"
        return self._message

    def _loop(self) -> None:
        while not self._stop.wait(0.25):
            silent = self._collector.silent_nodes(self._heartbeat_timeout_s)
            failed = self._collector.failure.is_set() or "error" in self._tf_status or silent
            if failed:
                if silent:
                    node, age = silent[0]
                    self._message = (f"node {node} stopped responding (no heartbeat for {age:.0f} s): its process "
                                     "was killed (SIGKILL, out of memory) or its machine was lost")
                else:
                    self._message = spark_error(str(self._tf_status.get("error", "")))
                log.error("a node failed; cancelling the Spark jobs")
                self._collector.abort()
                self._sc.cancelAllJobs()
                return
