"""Fail fast: turn a node's failure into the end of the run within seconds (TFoS alone would hang).

Shared by every experiment driver: :class:`Watchdog` watches the driver's collector (exceptions reported by
nodes, nodes that went silent) and TFoS's own status, and cancels the Spark jobs on the first sign;
:func:`require_executors` refuses to start TFoS with fewer executors than TF nodes.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from collections.abc import Callable

from ddl_commodity.errors import NodeFailure, UserInputError

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


def exception_line(traceback: str) -> str:
    """The line that names a traceback's exception (its message may go on over more lines)."""
    lines = traceback.strip().splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith(" ")]
    return lines[frames[-1] + 1] if frames and frames[-1] + 1 < len(lines) else (lines[-1] if lines else "")


class Watchdog:
    """Turns a node's failure into an immediate end of the Spark jobs (fail fast instead of TFoS's hang)."""

    def __init__(
        self,
        sc,
        collector,
        tf_status: dict,
        heartbeat_timeout_s: float,
        on_silent: Callable[[str, float], bool] | None = None,
    ) -> None:
        """``on_silent(node, seconds)``: offered every node that goes silent; returning True means the run
        survives that node's loss (``training.tolerate_worker_loss``), False (or no callback) fails the run."""
        self._sc, self._collector, self._tf_status = sc, collector, tf_status
        self._heartbeat_timeout_s = heartbeat_timeout_s
        self._on_silent = on_silent
        self._tolerated: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ddl-watchdog", daemon=True)
        self._failure: NodeFailure | None = None
        self.ps_reachable: Callable[[], bool] | None = None  # set once the PS address is known

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def failure(self) -> NodeFailure | None:
        """The failure that ended the run, once one has: decided by this watchdog, or a node's report."""
        if self._failure is not None:
            return self._failure
        f = self._collector.first_failure
        return blame_lost_ps(f, self.ps_reachable) if f is not None else None

    def _diagnose(self, silent: list[tuple[str, float]], lost: list[dict]) -> NodeFailure:
        """What failed, decided when the failure is seen and before the jobs are cancelled: the cancel stops
        the PS task too, so a check of the PS made later finds it gone, and a worker whose push lost the PS
        in the cancel reports a consequence: decided later, a killed worker would be blamed on the PS."""
        if silent:
            node, age = silent[0]
            return self._silence(node, age)
        if lost:
            return self._lost(lost[0], str(self._tf_status.get("error", "")))
        f = self._collector.first_failure
        if f is not None:
            return blame_lost_ps(f, self.ps_reachable)
        return self.explain(str(self._tf_status.get("error", "")))

    def explain(self, spark_text: str) -> NodeFailure:
        """Spark's error, or the node that caused it. Spark can fail before the heartbeat timeout: a lost
        machine's executor is noticed in seconds, and its feed task may be re-run where no TF node lives (on
        the executor Spark starts in its place, or on the compose cluster's spare worker). A node whose
        executor is gone, or failing that one already quiet for a few heartbeats, is then the cause, and
        Spark's error its consequence."""
        lost = self._lost_executor_nodes()
        if lost:  # Spark's own text says only which call failed, or that a re-run task found no TF node
            return self._lost(lost[0], spark_text)
        cause = spark_error(spark_text)
        quiet = self._collector.silent_nodes(SUSPECT_SILENCE_S)
        if quiet:
            silence = self._silence(*quiet[0])
            return NodeFailure(silence.node, silence.cause, f"{silence.detail} (then Spark: {exception_line(cause)})")
        return NodeFailure(None, "spark", cause)

    def _lost_executor_nodes(self) -> list[dict]:
        """The ``tasks`` records of TF nodes whose Spark executor is no longer among the application's
        executors: a lost executor fails Spark's job before its node misses a heartbeat, and a feed task that
        lands on its replacement fails with TFoS's "no executor_id file", which names nobody."""
        try:  # getExecutorIds is private[spark] in Scala, public to Py4J
            live = set(str(self._sc._jsc.sc().getExecutorIds().mkString(",")).split(","))
        except Exception:  # the context is stopping: nothing to say
            return []
        return [r for r in list(self._collector.records.get("tasks", []))
                if r.get("executor") is not None and str(r["executor"]) not in live]

    def _task(self, task: str) -> dict:
        """``task``'s ``tasks`` record (its node, host, pid and CPU share), or {} before it sent one."""
        return next((r for r in list(self._collector.records.get("tasks", [])) if r.get("task") == task), {})

    def _allowed_silence_s(self, task: str) -> float:
        """``heartbeat_timeout_s`` for a node of a full core or more; ``heartbeat_timeout_s / c`` for a node
        capped at a share ``c`` of a core (``profile: thesis``: 0.4), whose threads, its heartbeat's too, get
        their turns ``c`` times as often (on a loaded machine a live 0.4-core node can be silent 8 s).
        ``SET_UP_SILENCE_FACTOR`` times that until the node serves or has trained a step: its set-up (model,
        traced step, PS or TF server) is where a live node is silent longest on a loaded machine (8 s between
        a worker's first two heartbeats, before any training, though its later calls are fast)."""
        share = self._task(task).get("cpu_share")
        allowed = self._heartbeat_timeout_s / min(1.0, share) if share else self._heartbeat_timeout_s
        return allowed if self._collector.is_set_up(task) else allowed * SET_UP_SILENCE_FACTOR

    def _lost(self, task: dict, spark_text: str) -> NodeFailure:
        """A lost executor's node; when its TF process runs on this machine and went quiet too, what that
        process is doing. A frozen node's Spark worker misses the master's timeout (``worker_timeout_s``)
        while its TF process misses ours: either can be noticed first."""
        import socket

        message = lost_executor_message(task, spark_text)
        quiet = dict(self._collector.silent_nodes(SUSPECT_SILENCE_S))
        if task["task"] in quiet and task.get("pid") is not None and task.get("host") == socket.gethostname():
            message += f"; {process_state(task['pid'])}"
        return NodeFailure(task["task"], "lost", message)

    def _silence(self, task: str, age: float) -> NodeFailure:
        """Why ``task`` went silent, as far as the driver can tell: when its process runs on this machine's
        kernel (the embedded and namespace clusters: the task reported this host), dead and hung are told
        apart; a container or another PC has its own process ids."""
        import socket

        rec = self._task(task)
        where = f" on {rec['node']}" if rec.get("node") else ""
        head = f"node {task} stopped responding (no heartbeat for {age:.0f} s){where}"
        if rec.get("pid") is None or rec.get("host") != socket.gethostname():
            return NodeFailure(task, "silent", f"{head}: hung, killed or lost, or its link is down")
        return NodeFailure(task, "silent", f"{head}: {process_state(rec['pid'])}")

    def _loop(self) -> None:
        for polls in itertools.count(1):
            if self._stop.wait(0.25):
                return
            silent = [(n, age) for n, age in self._collector.silent_nodes(self._heartbeat_timeout_s)
                      if n not in self._tolerated and age > self._allowed_silence_s(n)]
            if silent and self._on_silent is not None and not self._collector.failure.is_set():
                survivable = [(n, age) for n, age in silent if self._on_silent(n, age)]
                self._tolerated.update(n for n, _ in survivable)
                silent = [item for item in silent if item not in survivable]
            # A TF node's executor gone ends a run that tolerates no loss, whether or not a Spark job fails
            # for it: an executor lost between two feed jobs fails no task, and its TF node may live on,
            # orphaned, heartbeating, waiting for a feed that can no longer reach it.
            lost = self._lost_executor_nodes() if self._on_silent is None and polls % 4 == 0 else []
            failed = self._collector.failure.is_set() or "error" in self._tf_status or silent or lost
            if failed:
                self._failure = self._diagnose(silent, lost)
                log.error("a node failed; cancelling the Spark jobs")
                self._collector.abort()
                self._sc.cancelAllJobs()
                return


def lost_executor_message(task: dict, spark_text: str) -> str:
    """Name the node of a lost executor, with Spark's reason when its text gives one (137: SIGKILL)."""
    where = f" on {task['node']}" if task.get("node") else ""
    head = f"node {task['task']} was lost: its Spark executor {task['executor']}{where}"
    found = re.search(rf"executor {re.escape(str(task['executor']))} exited[^)]*\) Reason: ([^\n]+)", spark_text)
    if found is None:  # e.g. its Spark worker missed the master's timeout: gone, not known to have exited
        return f"{head} is gone"
    reason = found.group(1).strip()
    if reason.endswith("code 137"):
        reason += ": killed by SIGKILL, or by the kernel's OOM killer"
    return f"{head} exited ({reason})"


LOST_PS_MARK = "ParameterServerLost"
#: How many times ``heartbeat_timeout_s`` a node may be silent before its set-up is over.
SET_UP_SILENCE_FACTOR = 3
#: Silence that, next to a Spark failure, names its node: three missed 2-second heartbeats.
SUSPECT_SILENCE_S = 6.0


def blame_lost_ps(failure: NodeFailure, ps_reachable: Callable[[], bool] | None,
                  ps_node: str = "ps-0") -> NodeFailure:
    """Name the parameter server when a worker failed only because it lost the PS (the PS cannot say so).

    The driver checks for itself that the PS no longer answers before blaming it; otherwise the worker's
    own report stands.
    """
    message = failure.detail
    if LOST_PS_MARK not in message or ps_reachable is None or ps_reachable():
        return failure
    first = message.splitlines()[0].removeprefix("node ").split(" raised")[0]
    detail = [ln for ln in message.splitlines() if f"{LOST_PS_MARK}: " in ln]
    detail = detail[-1].split(f"{LOST_PS_MARK}: ", 1)[1] if detail else ""
    return NodeFailure(ps_node, "lost", f"node {ps_node} (the parameter server) died or its machine was lost: the "
                       f"driver cannot reach it either (its process was killed, e.g. SIGKILL or out of memory). "
                       f"{first} noticed first: {detail}")


def process_state(pid: int) -> str:
    """What a silent node's process on this machine is doing: gone, hung (stopped or frozen), or running."""
    import psutil

    try:
        status = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        status = psutil.STATUS_DEAD
    if status in (psutil.STATUS_DEAD, psutil.STATUS_ZOMBIE):
        return "its process is gone (killed: SIGKILL, or out of memory by the kernel's OOM killer)"
    if status in (psutil.STATUS_STOPPED, psutil.STATUS_DISK_SLEEP, psutil.STATUS_TRACING_STOP):
        return "its process is hung (stopped or frozen, not running)"
    return "its process is alive but silent (hung inside, or its link is down)"
