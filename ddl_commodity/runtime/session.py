"""The driver side of one TFoS run, written once for every engine (Horovod's spark runner shape: one
object owns set-up and teardown, on every path).

:class:`TfosSession` opens the SparkContext, makes the run secret, starts the collector every node reports
to, checks there are enough executors, ships the user's experiment code, starts TFoS and records which
executor ran which node; on the way out it stops the watchdog, cancels Spark jobs after a failure (giving
the nodes a few heartbeats to hear "abort"), stops the collector and the SparkContext, and turns whatever
went wrong into one :class:`~ddl_commodity.errors.RunFailed` that names the failing node.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ddl_commodity.config import RunConfig, config_to_dict
from ddl_commodity.errors import NodeFailure, RunFailed, UserInputError
from ddl_commodity.runs import record_cluster_info, set_status
from ddl_commodity.runtime.node import NodeArgs


class TfosSession:
    """Use as ``with TfosSession(cfg, run_dir, "distributed run") as s: cluster = s.start(main_fun, args, mode)``.

    Args:
        cfg: the run's config (``cluster`` section, ``tf_nodes``).
        spark: where the run's SparkContext comes from and how it ends (default: this process's, made from the
            run's Spark settings if there is none, and stopped after the run).
        run_dir: where the collector writes the nodes' records.
        label: how failures are introduced ("distributed run failed: ...").
        on_record: called with ``(stream, record)`` for every record a node sends (progress lines); every record
            also goes to the run's TensorBoard event files.
        preload: records a resumed run keeps, by stream.
    """

    HEARTBEAT_S = 2.0

    def __init__(self, cfg: RunConfig, run_dir: Path, label: str,
                 on_record: Callable[[str, dict], None] | None = None,
                 preload: dict[str, list[dict]] | None = None, spark: SparkSource | None = None) -> None:
        self.cfg, self.run_dir, self.label = cfg, Path(run_dir), label
        self._spark = spark or ProcessContext()
        self._on_record, self._preload = on_record, preload or {}
        self.cluster: Any = None
        self.watchdog: Any = None
        self._workers_stopped = False

    def __enter__(self) -> TfosSession:
        from ddl_commodity.artifacts.tensorboard import RunBoard
        from ddl_commodity.runtime.collector import RunCollector
        from ddl_commodity.runtime.feed import SHARED_MEMORY
        from ddl_commodity.runtime.spark import tfos_spark_conf

        self.sc = self._spark.open(tfos_spark_conf(self.cfg))
        self.secret = secrets.token_urlsafe(24)
        self.shared_root = str(SHARED_MEMORY / f"ddl-feed-{secrets.token_hex(6)}")
        host = self.sc.getConf().get("spark.driver.host", self.cfg.cluster.host)
        self.board = RunBoard(self.run_dir)
        self.collector = RunCollector(self.run_dir, self.secret, host=host, on_record=self._record,
                                      max_message_bytes=self.cfg.ps.max_message_mb * 2**20)
        for stream, records in self._preload.items():
            self.collector.preload(stream, records)
        self.collector.start()
        return self

    def _record(self, stream: str, record: dict) -> None:
        if self._on_record is not None:
            self._on_record(stream, record)
        self.board.add(stream, record)

    def node_args(self, **extra: Any) -> NodeArgs:
        """What every node gets: the config, the secret, where the collector is, plus ``extra``."""
        return NodeArgs(config_to_dict(self.cfg), self.secret, self.collector.address, heartbeat_s=self.HEARTBEAT_S,
                        driver_lost_s=self.cfg.cluster.failure_timeout_s / 2, **extra)

    def start(self, main_fun: Callable, args: NodeArgs, input_mode: str,
              on_silent: Callable[[str, float], bool] | None = None, files: tuple[Path, ...] = ()) -> Any:
        """Check executors, ship ``files`` and the experiment's code, start the watchdog, then TFoS in
        ``input_mode`` ``spark`` (Spark feeds the workers) or ``tensorflow`` (nodes read their own data)."""
        from ddl_commodity.experiments.registry import experiment_code_archive
        from ddl_commodity.runtime.failfast import Watchdog, require_executors
        from ddl_commodity.runtime.tfos_import import import_tfcluster

        TFCluster = import_tfcluster()
        TFCluster.tf_status.clear()  # TFoS keeps it per process: an earlier run's error must not end this one
        self.watchdog = Watchdog(self.sc, self.collector, TFCluster.tf_status, self.cfg.cluster.heartbeat_timeout_s,
                                 on_silent=on_silent)
        require_executors(self.sc, self.cfg)
        for path in files:
            self.sc.addFile(str(Path(path).resolve()))
        archive = experiment_code_archive(self.cfg.experiment, self.run_dir)
        if archive is not None:
            self.sc.addPyFile(str(archive))
        self.watchdog.start()
        mode = {"spark": TFCluster.InputMode.SPARK, "tensorflow": TFCluster.InputMode.TENSORFLOW}[input_mode]
        self.cluster = TFCluster.run(self.sc, main_fun, args, self.cfg.tf_nodes, num_ps=1, input_mode=mode,
                                     reservation_timeout=int(self.cfg.cluster.startup_timeout_s),
                                     log_dir=str(self.run_dir / "tflogs"), release_port=True)
        record_cluster_info(self.run_dir, self.cluster.cluster_info)
        return self.cluster

    def check_failed(self) -> None:
        """Raise if a node failed (for engines that wait in a loop rather than in a Spark job)."""
        from tensorflowonspark import TFCluster

        if self.collector.failure.is_set() or "error" in TFCluster.tf_status or self.watchdog.failure() is not None:
            raise RunFailed("a node failed")

    def watched(self, call: Callable[[], Any], name: str) -> Any:
        """``call()``, run in a thread while the driver keeps watching the nodes: a call to a node that hangs
        (a frozen PS accepts the connection and never answers) would otherwise hold the driver for the call's
        own timeout, minutes after the run has failed. Raises :class:`RunFailed` as soon as a node has failed."""
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["value"] = call()
            except BaseException as err:  # raised in the driver's thread below
                box["error"] = err

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.2)
            if thread.is_alive():
                self.check_failed()
        if "error" in box:
            raise box["error"]
        return box["value"]

    def feed(self, rdd: Any, timeout_s: float) -> None:
        """Feed every partition of ``rdd`` to the worker node its task lands on (TFoS's ``TFCluster.train``
        for one epoch, without TensorFlow in the feeding Python workers, large items through shared memory:
        :mod:`ddl_commodity.runtime.feed`)."""
        from ddl_commodity.runtime.feed import feed_partition

        rdd.foreachPartition(feed_partition(self.cluster.cluster_info, timeout_s, shared_root=self.shared_root))

    def stop_workers(self, workers: int | None = None) -> None:
        """End every worker's feed (TFoS's worker shutdown job): each worker's loop sees the end of its data.

        ``workers``: how many worker executors still take tasks (fewer after a tolerated loss).
        """
        from ddl_commodity.runtime.feed import end_feed

        if workers is None:
            workers = sum(n["job_name"] not in ("ps", "evaluator") for n in self.cluster.cluster_info)
        rdd = self.sc.parallelize(range(workers), workers)
        rdd.foreachPartition(end_feed(self.cluster.cluster_info, self.cluster.queues))
        self._workers_stopped = True

    def shutdown(self, timeout_s: float) -> None:
        """The normal end, as TFoS's ``TFCluster.shutdown`` but polling Spark every 0.2 s where TFoS sleeps
        5 s at a time, seconds of every run. Workers' tasks finish,
        their feeds end, each PS is told to stop, and every Spark job ends; then leaving the session tears
        down without cancelling anything."""
        from tensorflowonspark import TFCluster, TFManager

        deadline = time.monotonic() + timeout_s
        ps = [n for n in self.cluster.cluster_info if n["job_name"] in ("ps", "evaluator")]
        if self.cluster.input_mode == TFCluster.InputMode.TENSORFLOW:
            self._wait_until(lambda: self._only_ps_tasks_left(len(ps)), deadline)
        if not self._workers_stopped:
            self.stop_workers()
        if "error" in TFCluster.tf_status:
            raise RunFailed("a node failed while stopping")
        for node in ps:  # PS tasks never end by themselves; TFoS stops them through their manager's queue
            queue = TFManager.connect(node["addr"], node["authkey"]).get_queue("control")
            # watched: a PS task that failed instead of taking the stop would leave join() waiting forever
            self.watched(lambda q=queue: (q.put(None), q.join()), "stop-ps")
        self._wait_until(lambda: not self.sc.statusTracker().getActiveJobsIds(), deadline)
        self.cluster.server.stop()
        self.cluster = None

    def _only_ps_tasks_left(self, ps_tasks: int) -> bool:
        tracker = self.sc.statusTracker()
        if not tracker.getActiveJobsIds():
            return True
        return any(tracker.getStageInfo(i).numActiveTasks == ps_tasks for i in tracker.getActiveStageIds())

    def _wait_until(self, done: Callable[[], bool], deadline: float) -> None:
        while not done():
            self.check_failed()
            if time.monotonic() > deadline:
                raise RunFailed("the TF nodes did not finish in time")
            time.sleep(0.2)

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: Any) -> bool:
        from ddl_commodity.runtime.failfast import spark_error

        failure = None
        if exc is not None and not isinstance(exc, UserInputError | KeyboardInterrupt):
            # TFoS calls sys.exit(1) when a node fails during start-up: SystemExit is a failure too.
            if self.watchdog is None:
                failure = NodeFailure(None, "spark", spark_error(str(exc)))
            else:
                failure = self.watchdog.failure() or self.watchdog.explain(str(exc))
        if self.watchdog is not None:
            self.watchdog.stop()
        try:
            self._tear_down(failure)
        finally:
            self._spark.close(self.sc)
        if failure is not None:
            raise RunFailed(f"{self.label} failed: {failure}", [failure]) from None
        return False


    def _tear_down(self, failure: NodeFailure | None) -> None:
        """Everything of the run but its SparkContext, on every path: a driver JVM that died (out of memory)
        can no longer cancel its jobs, and the rest must go all the same."""
        from py4j.protocol import Py4JError

        from ddl_commodity.runtime.feed import remove_orphaned

        if self.cluster is not None:  # failed mid-run
            self.collector.abort()
            with contextlib.suppress(Py4JError, AttributeError):  # AttributeError: a stopped context
                self.sc.cancelAllJobs()
            self.cluster.server.stop()  # TFoS's reservation listener
            # Keep the collector up until every surviving node has heard "abort" (at its next heartbeat) and
            # exits by itself: on a real cluster nobody else would stop its TF process.
            self.collector.wait_heard(3 * self.HEARTBEAT_S)
        self.collector.abort()
        self.collector.stop()
        self.board.close()
        # What killed feeders left on this machine (a feeder still writing after a failure falls back to the
        # queue), and what runs killed with their driver left. Before Spark's stop, which `ddl run` may end.
        shutil.rmtree(self.shared_root, ignore_errors=True)
        remove_orphaned()
        if failure is not None:
            # Said before stopping Spark: with a node hung (frozen) or cut off, SparkContext.stop waits for
            # its executor until the master gives the node up (60 s and more); `ddl run` ends the driver then.
            set_status(self.run_dir, "failed", error=f"RunFailed: {self.label} failed: {failure}",
                       failures=[failure.to_dict()])


class SparkSource(Protocol):
    """Where a run's SparkContext comes from (:meth:`open`, with the run's Spark settings) and how it ends."""

    def open(self, conf: Any) -> Any: ...

    def close(self, sc: Any) -> None: ...


class ProcessContext:
    """The SparkContext of this process: ``sc`` when given (the caller's; it stays up after the run), else the
    active one or one made from the run's settings (spark-submit's driver), stopped after the run."""

    def __init__(self, sc: Any = None) -> None:
        self._given = sc

    def open(self, conf: Any) -> Any:
        from pyspark import SparkContext

        return self._given if self._given is not None else SparkContext.getOrCreate(conf)

    def close(self, sc: Any) -> None:
        if self._given is None:
            sc.stop()
