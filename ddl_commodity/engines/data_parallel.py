"""The data-parallel engine, driver side (thesis 5.2.2, Figs 4.2, 5.2): TFoS in Spark-input mode with one PS
task and M worker tasks, fed with RDD bundles, synchronised by the staleness-weighted PS of eq. 5.1.

Any experiment's model and data go through it: every sample is fed as one flat array
(:meth:`~ddl_commodity.experiments.api.Dataset.flat`) and split back into the model's inputs on the worker.
The node side is :mod:`ddl_commodity.engines.data_parallel_node`.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ddl_commodity.config import RunConfig
from ddl_commodity.engines.single import print_epoch
from ddl_commodity.errors import RunFailed, UserInputError
from ddl_commodity.experiments.api import Dataset, Experiment, SourceData
from ddl_commodity.experiments.registry import view_of
from ddl_commodity.runtime.session import SparkSource, TfosSession

log = logging.getLogger(__name__)


def train(experiment: Experiment, cfg: RunConfig, data: Dataset | SourceData, run_dir: Path,
          resumed: dict | None = None, progress: bool | None = None,
          spark: SparkSource | None = None) -> tuple[dict, dict]:
    """Run the cluster; return the final global model's metrics and the summary sections of this engine.
    ``progress``: a live bar within epochs (``None``: only if stdout is a terminal); ``spark``: where the
    SparkContext comes from (:class:`~ddl_commodity.runtime.session.TfosSession`)."""
    from ddl_commodity.engines.data_parallel_node import main_fun, ps_address
    from ddl_commodity.engines.progress import EpochBar
    from ddl_commodity.runtime.node import FaultInjection

    t = cfg.training
    rows = RowsWhereTheyLie(data, cfg.data.cache) if isinstance(data, SourceData) else RowsInMemory(data, run_dir)
    preload = _surviving_records(run_dir, resumed) if resumed else None
    first_epoch = resumed["first_epoch"] if resumed else 0
    on_record = _EpochPrinter(t.epochs, view_of(experiment).validation_curve)
    with (tempfile.TemporaryDirectory(prefix="ddl-feed-") as feed_dir,
          TfosSession(cfg, run_dir, "distributed run", on_record, preload, spark) as session):
        losses = _WorkerLossHandler(session, cfg) if t.tolerate_worker_loss else None
        rows.prepare(session.sc, Path(feed_dir))
        files = rows.files + ((run_dir / "checkpoints" / "ps.npz",) if resumed else ())
        args = session.node_args(
            input_shapes=tuple(data.input_shapes), fault=FaultInjection(**cfg.faults.model_dump()),
            first_epoch=first_epoch, resume_checkpoint="ps.npz" if resumed else "",
            monitor_interval_s=cfg.monitor.interval_s if cfg.monitor else 0.0, **rows.validation_args())
        cluster = session.start(main_fun, args, "spark", files=files, on_silent=losses.on_silent if losses else None)
        ps_node = next(n for n in cluster.cluster_info if n["job_name"] == "ps")
        ps_addr = ps_address(f"{ps_node['host']}:{ps_node['port']}", cfg)
        session.watchdog.ps_reachable = lambda: _ps_reachable(ps_addr, session.secret)
        per_epoch = len(data.train_index) * (t.workers if t.data_distribution == "same" else 1)
        with EpochBar(session.collector, per_epoch, t.epochs, enabled=progress):
            live_per_epoch = _feed(session, rows, data, cfg, losses, ps_addr, first_epoch)
            made, model_file = _finish(session, cfg, losses, ps_addr)
        cached = rows.release(session.sc)
        session.shutdown(cfg.ps.push_timeout_s + 120)
    final, sections = _final(cfg, data, run_dir, made, model_file, losses, live_per_epoch)
    return final, {**sections, **({"data_cache": cached} if cached else {})}


class RowsInMemory:
    """Rows the driver loaded (:class:`Dataset`): Spark ships them to the executors as files, numbers them with
    ``zipWithIndex`` there (Fig 5.2) and caches them in chunks; the validation rows travel as a file."""

    def __init__(self, data: Dataset, run_dir: Path) -> None:
        self.data, self.validation_file = data, run_dir / "validation.npz"
        self.files: tuple[Path, ...] = (self.validation_file,)
        self.chunks = None
        self.epoch_per_job = False  # one job feeds every epoch from the cached chunks

    def prepare(self, sc, workdir: Path) -> None:
        from ddl_commodity.data.rdd import indexed_chunks

        x_all, index = self.data.flat(), self.data.validation_index
        np.savez(self.validation_file, x=x_all[index], y=self.data.labels[index])
        # ~8 MiB of rows per task: each task costs ~0.1 s (1 MiB slices would make numbering the rows about
        # three times slower), and a task holds its rows in memory.
        slices = max(sc.defaultParallelism, int(x_all.nbytes // (8 * 2**20)) + 1)
        # Cached: every feed job reads it (one per epoch when worker loss is tolerated).
        self.chunks = indexed_chunks(sc, x_all, self.data.labels, slices, workdir).cache()

    def validation_args(self) -> dict:
        return {"validation_file": self.validation_file.name}

    def release(self, sc) -> dict:
        """Unpersist the chunks; nothing to report (rows in memory are always cached)."""
        if self.chunks is not None:
            self.chunks.unpersist()
        return {}

    def feed_rdd(self, sc, shards: np.ndarray, workers: int, start: int, end: int, cfg: RunConfig):
        from ddl_commodity.data.rdd import epoch_feed_rdd

        t = cfg.training
        return epoch_feed_rdd(sc, self.chunks, shards, workers, end, t.data_distribution,
                              t.batch_size * t.feed_bundle_batches, cfg.seed, first_epoch=start)


class RowsWhereTheyLie:
    """A data set the executors read (:class:`SourceData`): each feed task streams its shard's pieces from
    the source, and every node reads the validation pieces itself; the driver handles no rows.

    With ``data.cache`` (``memory`` or ``disk``) the rows the first epoch reads are persisted by Spark at that
    level (:func:`~ddl_commodity.data.streaming.persisted_pieces`) and every epoch is a feed job of its own,
    reading them from there; the summary's ``data_cache`` says what Spark held."""

    files: tuple[Path, ...] = ()

    def __init__(self, data: SourceData, cache: str = "none") -> None:
        self.data, self.cache = data, cache
        self.epoch_per_job = cache != "none"
        self._persisted: dict[tuple[int, str], list] = {}  # (live workers, distribution) -> one RDD per slot
        self._report: dict = {}

    def prepare(self, sc, workdir: Path) -> None:
        """Nothing to ship: the pieces are read where they lie."""

    def validation_args(self) -> dict:
        return {"validation_pieces": tuple(self.data.validation_pieces),
                "validation_columns": (*self.data.inputs, self.data.label)}

    def feed_rdd(self, sc, shards: np.ndarray, workers: int, start: int, end: int, cfg: RunConfig):
        from ddl_commodity.data.streaming import piece_feed_rdd

        t, d = cfg.training, self.data
        if self.cache != "none":
            return self._cached_feed(sc, shards, workers, start, cfg)
        return piece_feed_rdd(sc, d.pieces, shards, workers, end, t.data_distribution,
                              t.batch_size * t.feed_bundle_batches, cfg.seed, d.inputs, d.label, first_epoch=start)

    def _cached_feed(self, sc, shards: np.ndarray, workers: int, epoch: int, cfg: RunConfig):
        from ddl_commodity.data.streaming import cached_epoch_feed, persisted_pieces, pieces_of, storage_report

        t, d = cfg.training, self.data
        key = (workers, t.data_distribution)
        if key not in self._persisted:  # a first epoch, or fewer live workers: the rows dealt again
            self._report = self.release(sc)
            if t.data_distribution == "same":
                everything = persisted_pieces(sc, pieces_of(d.pieces, shards, None), d.inputs, d.label, self.cache)
                self._persisted[key] = [everything] * workers
            else:
                self._persisted[key] = [persisted_pieces(sc, pieces_of(d.pieces, shards, m), d.inputs, d.label,
                                                         self.cache) for m in range(workers)]
        elif not self._report:  # the first epoch's job has run: what Spark holds now
            self._report = storage_report(sc, self._persisted[key])
        return cached_epoch_feed(sc, self._persisted[key], epoch, t.batch_size * t.feed_bundle_batches, cfg.seed)

    def release(self, sc) -> dict:
        """Unpersist the cached rows; return what Spark held of them (empty without a cache)."""
        from ddl_commodity.data.streaming import storage_report

        held = [rdd for slots in self._persisted.values() for rdd in slots]
        report = self._report or (storage_report(sc, held) if held else {})
        for rdd in held:
            rdd.unpersist()
        self._persisted.clear()
        return report


def _feed(session: TfosSession, rows: RowsInMemory | RowsWhereTheyLie, data: Dataset | SourceData, cfg: RunConfig,
          losses: _WorkerLossHandler | None, ps_addr: str, first_epoch: int) -> dict[int, int]:
    """Feed every epoch: one Spark job for all of them, or, when worker loss is tolerated, one per epoch.

    A job has one partition per worker (:func:`~ddl_commodity.data.rdd.epoch_feed_rdd`): its M tasks start
    together on the M idle one-core worker executors, one each. In one job, a worker goes from one epoch to
    the next without waiting for a Spark job to start (0.2-0.4 s per epoch) or for the slowest
    worker's epoch, as the thesis's asynchronous PS assumes. A tolerated loss needs an epoch per job: the
    lost worker's task is re-run on a live executor, which must then train one epoch of the lost shard, not
    all that were left; and from the next epoch the training set is dealt among the live workers (a
    disjoint shard per live worker), so no data is dropped and no partition waits for a worker that is gone.
    With ``data.cache`` every epoch is a job too: the later ones read what Spark persisted in the first.
    Returns {feed epoch: workers fed}.
    """
    t = cfg.training
    if losses is not None:
        losses.ps_address = ps_addr
    per_job = losses or rows.epoch_per_job
    jobs = [(e, e + 1) for e in range(first_epoch, t.epochs)] if per_job else [(first_epoch, t.epochs)]
    plan: dict[int, int] = {}
    for start, end in jobs:
        live = losses.live_workers() if losses else t.workers
        if losses is not None:
            losses.feed_epoch = start
        plan.update(dict.fromkeys(range(start, end), live))
        feed = rows.feed_rdd(session.sc, data.shards(live, cfg.seed), live, start, end, cfg)
        session.feed(feed, timeout_s=cfg.ps.push_timeout_s + 60)
    return plan


def _finish(session: TfosSession, cfg: RunConfig, losses: _WorkerLossHandler | None,
            ps_addr: str) -> tuple[dict, bytes]:
    """End every (live) worker's feed, let them push their last update, then have the PS node make the final
    model from the global weights: its scores, version and stats, and the ``.keras`` file's bytes."""
    from ddl_commodity.ps import ParameterServerClient

    if losses is None:
        session.stop_workers()
    else:  # only the live workers' executors take tasks
        session.stop_workers(losses.live_workers())

    def final_from_ps() -> tuple[dict, bytes]:
        with ParameterServerClient(ps_addr, session.secret, worker=-1, timeout=cfg.ps.push_timeout_s) as driver:
            _wait_workers_finished(driver, cfg)
            return driver.final()

    return session.watched(final_from_ps, "final-model")


def _final(cfg: RunConfig, data: Dataset | SourceData, run_dir: Path, made: dict, model_file: bytes,
           losses: _WorkerLossHandler | None, live_per_epoch: dict[int, int]) -> tuple[dict, dict]:
    """Save the global model the PS made, and build this engine's summary sections."""
    from ddl_commodity.artifacts.curves import load_worker_curves
    from ddl_commodity.engines.distribution_check import check_distribution
    from ddl_commodity.engines.scoring import prefixed
    from ddl_commodity.runs import read_jsonl

    (run_dir / "model.keras").write_bytes(model_file)
    scores = made["scores"]
    final: dict = prefixed(scores, "val_") if scores else {}
    final.update({"ps_version": made["version"], "ps": made["stats"]})
    lost = list(losses.losses) if losses else []
    sections = {
        "data_distribution_check": check_distribution(cfg, data, load_worker_curves(run_dir), live_per_epoch, lost),
        "ps_updates": sum(r.get("event", "applied") == "applied" for r in read_jsonl(run_dir / "ps.jsonl")),
    }
    if losses is not None:
        sections["worker_losses"] = lost
        sections["live_workers_per_epoch"] = {str(e): n for e, n in live_per_epoch.items()}
    return final, sections


def _ps_reachable(address: str, secret: str) -> bool:
    from ddl_commodity.ps import ParameterServerClient

    with ParameterServerClient(address, secret, worker=-1, timeout=3.0) as probe:
        return probe.reachable(timeout=3.0)


class _WorkerLossHandler:
    """Driver side of ``training.tolerate_worker_loss``: turn a silent worker into a loss the run survives.

    Called by the watchdog for every node that went silent. For a worker (never the PS, never the last
    worker) whose Spark executor is known it: removes the worker at the PS (``s`` drops to the live count,
    so the others' pending pushes are applied; ``ps.jsonl`` gets a ``lost`` event), then releases that
    executor through Spark. A released executor is not replaced, no later feed task lands on it, and the feed
    task it was running (the dead worker's partition, blocked in TFoS's queue join) is re-run on a live
    executor: Spark does not count a driver-killed executor's tasks as failures.
    """

    def __init__(self, session: TfosSession, cfg: RunConfig) -> None:
        self._session, self._cfg = session, cfg
        self._lock = threading.Lock()
        self.losses: list[dict] = []
        self.ps_address: str | None = None
        self.feed_epoch: int | None = None

    def live_workers(self) -> int:
        with self._lock:
            return self._cfg.training.workers - len(self.losses)

    def _executor_of(self, worker: int) -> str | None:
        joined = [r for r in list(self._session.collector.records.get("ps", []))
                  if r.get("event") == "joined" and r.get("worker") == worker]
        return str(joined[-1]["executor"]) if joined and joined[-1].get("executor") is not None else None

    def on_silent(self, node: str, seconds: float) -> bool:
        if self.ps_address is None or not node.startswith("worker-") or self.live_workers() <= 1:
            return False
        worker = int(node.removeprefix("worker-"))
        executor = self._executor_of(worker)
        if executor is None:
            return False
        loss = {"worker": node, "time": time.time(), "detected_by": "heartbeat silence",
                "silent_seconds": round(seconds, 1), "feed_epoch": self.feed_epoch, "executor": executor}
        try:
            loss.update(self._remove(worker, executor, loss))
        except Exception as err:  # the run cannot go on without the PS or Spark: fail as usual
            log.error("could not remove lost %s: %s", node, err)
            return False
        with self._lock:
            self.losses.append(loss)
        print(f"  {node} lost (no heartbeat for {seconds:.0f} s): continuing with {self.live_workers()} "
              f"workers, PS s = {loss['s_effective']}", flush=True)
        return True

    def _remove(self, worker: int, executor: str, loss: dict) -> dict:
        from ddl_commodity.ps import ParameterServerClient

        detail = {k: loss[k] for k in ("detected_by", "silent_seconds", "feed_epoch", "executor")}
        with ParameterServerClient(self.ps_address, self._session.secret, worker=worker, timeout=30.0) as ps:
            stats = ps.finish(reason="lost", detail=detail)
        released = bool(self._session.sc._jsc.sc().killExecutor(executor))
        return {"executor_released": released, "s_effective": stats.get("s_effective")}


def _wait_workers_finished(driver, cfg: RunConfig) -> None:
    """Until the PS has no live worker (run under :meth:`TfosSession.watched`, which ends it if a node fails)."""
    deadline = time.monotonic() + cfg.ps.push_timeout_s
    while driver.stats().get("live_workers", 0) > 0:
        if time.monotonic() > deadline:
            raise RunFailed("workers did not finish their last update in time")
        time.sleep(0.2)


class _EpochPrinter:
    """One line per finished worker epoch on the driver's stdout: progress that also reads well in CI logs.

    A line counts feed epochs: a survivor that also trains a lost worker's shard of a feed epoch
    (``tolerate_worker_loss``) prints that epoch again and says so, not an epoch past the run's last."""

    def __init__(self, epochs: int, validation: tuple[str, str]) -> None:
        self.epochs, self.validation = epochs, validation
        self._printed: set[tuple[str, int]] = set()

    def __call__(self, stream: str, r: dict) -> None:
        if not stream.startswith("workers/"):
            return
        key = (r["worker"], r["feed_epoch"])
        note = ", a lost worker's shard" if key in self._printed else ""
        self._printed.add(key)
        print_epoch({**r, "epoch": r["feed_epoch"] + 1}, self.epochs, self.validation, note)


# ---------------------------------------------------------------------------------------------------------
# Resuming from a PS checkpoint


def resume_point(cfg: RunConfig, run_dir: Path) -> dict:
    """Where a resumed run starts: the last checkpoint's version and the feed epochs it covers."""
    from ddl_commodity.ps.checkpoint import CHECKPOINT_FILE, load_checkpoint
    from ddl_commodity.runs import read_jsonl

    if cfg.training.engine != "data_parallel":
        raise UserInputError(f"{run_dir}: only distributed runs can be resumed")
    meta, _ = load_checkpoint(run_dir / CHECKPOINT_FILE)
    reached = max((r.get("applied_version", 0) for r in read_jsonl(run_dir / "ps.jsonl")), default=0)
    return {
        "from_version": int(meta["version"]),
        "applied_updates": int(meta["applied_updates"]),
        # every feed epoch yields M pushes, so the checkpoint covers this many whole feed epochs
        "first_epoch": int(meta["applied_updates"]) // cfg.training.workers,
        "versions_lost": max(0, reached - int(meta["version"])),
        "time": time.time(),
    }


def _surviving_records(run_dir: Path, resumed: dict) -> dict[str, list[dict]]:
    """Records of the failed attempt that the checkpoint still stands behind (later ones were rolled back)."""
    from ddl_commodity.runs import read_jsonl

    keep: dict[str, list[dict]] = {}
    for path in sorted((run_dir / "workers").glob("*.jsonl")):
        keep[f"workers/{path.stem}"] = [r for r in read_jsonl(path) if r.get("feed_epoch", 0) < resumed["first_epoch"]]
    ps = [r for r in read_jsonl(run_dir / "ps.jsonl")
          if r.get("event") == "applied" and r["applied_version"] <= resumed["from_version"]]
    keep["ps"] = [*ps, {"event": "resumed", "time": resumed["time"], "from_version": resumed["from_version"],
                        "versions_lost": resumed["versions_lost"]}]
    return keep
