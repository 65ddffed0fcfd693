"""What runs on the cluster's nodes: the one runtime every engine's TFoS ``main_fun`` starts with.

:class:`NodeRuntime` gives a node its name, a client of the driver's collector, a heartbeat thread that
ends the process when the driver aborts the run or disappears, and :meth:`NodeRuntime.guard`, which
reports an exception to the driver *before* TFoS sees it (TFoS alone would leave the driver waiting
for a feed timeout). :func:`node_session` wraps all of it, plus the node's sampler, around an engine's
node function, and hands it the run's experiment and config.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ddl_commodity.runtime.collector import CollectorClient

ABORT_EXIT_CODE = 75


@dataclass(frozen=True)
class FaultInjection:
    """Testing aid: make ``worker`` fail at the start of ``epoch`` (1-based). Never set in real runs.

    ``kind``: ``exception`` raises (the node reports it), ``sigkill`` kills the node's process (it cannot),
    ``oom`` allocates memory under a limit set for that one process until the kernel kills it.
    """

    worker: int = -1
    epoch: int = 1
    kind: str = "exception"
    ps_kill_at_version: int | None = None


@dataclass(frozen=True)
class NodeArgs:
    """Everything a node needs, pickled by TFoS into each executor (``tf_args``)."""

    config: dict
    secret: str
    collector_address: str
    validation_file: str = ""  # SparkFiles name of the validation rows the driver shipped
    validation_pieces: tuple = ()  # or the pieces of a data set the node reads itself (data.parquet.Piece)
    validation_columns: tuple = ()  # their input columns, then the label column (data.parquet.Column)
    data_pieces: tuple = ()  # model parallel from a data set: the training pieces the input node streams
    input_shapes: tuple[tuple[int, ...], ...] = ()  # per-sample shapes of the model's inputs (fed flat)
    layers: dict[str, str] = field(default_factory=dict)  # model parallel: layer -> node, resolved by the driver
    variables: str = "ps:0"  # model parallel: the node that holds the weights
    input_node: str = "worker:0"  # model parallel: the node that runs the training loop
    monitor_interval_s: float = 0.0  # > 0: sample the node's CPU, memory and network at this interval
    data_file: str = ""  # SparkFiles name of the data a TensorFlow-input node reads from its local disk
    heartbeat_s: float = 2.0
    driver_lost_s: float = 30.0
    fault: FaultInjection = FaultInjection()
    resume_checkpoint: str = ""  # SparkFiles name of the PS checkpoint to start from ("" = fresh start)
    first_epoch: int = 0  # feed epochs already done before a resume
    num_gpus: int = 0

    def __contains__(self, key: str) -> bool:
        # TFoS probes ``'num_gpus' in tf_args`` (written for argparse namespaces and dicts).
        return hasattr(self, key)


def node_name() -> str | None:
    """The cluster node this process runs on: the toolkit's own clusters tag every process (``DDL_NODE``);
    a container of the compose cluster is a node, named by its hostname. None elsewhere."""
    from ddl_commodity.resources.cgroups import in_container

    return os.environ.get("DDL_NODE") or (socket.gethostname() if in_container() else None)


def spark_executor_id() -> str | None:
    """The Spark executor this node's process belongs to, from its ancestry (the executor JVM's command line).

    TFoS knows its nodes only by its own reservation index; the driver needs Spark's executor id to release
    the executor of a dead worker (``training.tolerate_worker_loss``).
    """
    import psutil

    try:
        proc: psutil.Process | None = psutil.Process()
        while proc is not None:
            cmd = proc.cmdline()
            if "--executor-id" in cmd:
                return cmd[cmd.index("--executor-id") + 1]
            proc = proc.parent()
    except (psutil.Error, IndexError):
        return None
    return None


def _float_or_none(text: str | None) -> float | None:
    return float(text) if text else None


class NodeRuntime:
    """Per-node helpers; one per TFoS node process."""

    def __init__(self, args: NodeArgs, job_name: str, task_index: int) -> None:
        self.args = args
        self.name = f"{job_name}-{task_index}"
        self.collector = CollectorClient(args.collector_address, args.secret, self.name)
        self.progress: dict | None = None  # sent with every heartbeat: the driver's live progress bar
        # Set once the node serves or has trained a step; until then the watchdog allows it more silence.
        self.set_up = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat_loop, name="ddl-heartbeat", daemon=True)

    def start_heartbeat(self) -> None:
        with contextlib.suppress(Exception):
            self.collector.heartbeat(set_up=False)  # registers the node before the first interval
            # Which cluster node (and Spark executor) runs this task: faults and reports name the node.
            self.collector.record("tasks", {"task": self.name, "node": node_name(), "host": socket.gethostname(),
                                            "executor": spark_executor_id(), "pid": os.getpid(),
                                            "cpu_share": _float_or_none(os.environ.get("DDL_NODE_CPUS"))})
        self._thread.start()

    def _heartbeat_loop(self) -> None:
        # A node must not outlive its run: exit when the driver says so or stops answering, otherwise a
        # TF process keeps a 2 GB worker busy after the driver crashed.
        last_ok = time.monotonic()
        while not self._stop.wait(self.args.heartbeat_s):
            try:
                if self.collector.heartbeat(progress=self.progress, set_up=self.set_up):
                    os._exit(ABORT_EXIT_CODE)
                last_ok = time.monotonic()
            except Exception:
                if time.monotonic() - last_ok > self.args.driver_lost_s:
                    os._exit(ABORT_EXIT_CODE)

    def record(self, stream: str, record: dict) -> None:
        if self.collector.record(stream, record):
            os._exit(ABORT_EXIT_CODE)

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Run the node's work; on an exception, tell the driver who failed and why, then re-raise."""
        try:
            yield
            self._stop.set()
            with contextlib.suppress(Exception):
                self.collector.heartbeat(done=True)
        except BaseException as err:
            message = f"{self.name} on {os.uname().nodename} (pid {os.getpid()}) raised {type(err).__name__}:\n"
            message += traceback.format_exc()
            with contextlib.suppress(Exception):
                self.collector.fail(message)
            raise
        finally:
            self._stop.set()


@contextlib.contextmanager
def node_session(args: NodeArgs, ctx: Any) -> Iterator[tuple[NodeRuntime, Any, Any]]:
    """Everything a TFoS node does around its work: heartbeat, sampler, fail-fast guard.

    Yields ``(runtime, experiment, cfg)``: the run's experiment (resolved by the registry on this executor)
    and its validated config.
    """
    from ddl_commodity.experiments.registry import experiment_and_config

    runtime = NodeRuntime(args, ctx.job_name, ctx.task_index)
    runtime.start_heartbeat()
    sampler = None
    if args.monitor_interval_s > 0:
        from ddl_commodity.monitor.sampler import NodeSampler

        stream = f"nodes/{runtime.name}"
        sampler = NodeSampler(runtime.name, lambda rows: runtime.collector.record(stream, {"rows": rows}),
                              args.monitor_interval_s).start()
    try:
        with runtime.guard():
            experiment, cfg = experiment_and_config(args.config, "run config", check=False)
            yield runtime, experiment, cfg
    finally:
        if sampler is not None:
            sampler.stop()
