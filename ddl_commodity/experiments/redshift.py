"""Driver of the redshift experiment (thesis chapter 5): single-machine baseline or TFoS data parallel.

:func:`prepare` validates everything a run needs (config, data file) before any cluster starts;
:func:`run` trains and writes ``runs/<id>/`` (see :mod:`ddl_commodity.runs`).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ddl_commodity.config import ExperimentConfig, FaultSettings, config_to_dict
from ddl_commodity.errors import DataError, RunFailed, UserInputError
from ddl_commodity.runs import record_cluster_info, record_outcome, set_status, write_yaml_atomic

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    path: Path
    train_index: np.ndarray
    validation_index: np.ndarray
    num_rows: int
    #: (x, y) of every row when they do not come from a redshift HDF5 file (the land-cover data-parallel run
    #: feeds one flat array per patch through the same machinery).
    arrays: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        if self.arrays is not None:
            return self.arrays()
        from ddl_commodity.data.redshift import load_redshift_h5

        data = load_redshift_h5(self.path)
        return data.spectra, data.label


def dataset_path(cfg: ExperimentConfig) -> Path:
    """The HDF5 file a run reads: ``data.path``, or the cached simulation for (samples, seed)."""
    from ddl_commodity.data.redshift import GENERATOR_VERSION

    if cfg.data.path is not None:
        return Path(cfg.data.path)
    return Path(cfg.data.cache_dir) / f"redshift-n{cfg.data.samples}-s{cfg.seed}-v{GENERATOR_VERSION}.h5"


def simulator_config(cfg: ExperimentConfig):
    from ddl_commodity.data.redshift import SimulatorConfig

    s = cfg.data.simulator
    return SimulatorConfig(
        z_distribution=s.z_distribution, magnitude_mean=s.magnitude_mean, magnitude_std=s.magnitude_std,
        noise=s.noise,
    )


def prepare(cfg: ExperimentConfig, progress: bool | None = None) -> PreparedData:
    """Make sure the data exist and are well formed; generate them when the config asks for a simulation.

    Raises :class:`DataError` (exit code 2) for a missing or malformed file.
    """
    from ddl_commodity.data.redshift import load_redshift_h5, train_validation_split, write_redshift_h5

    path = dataset_path(cfg)
    if cfg.data.path is None and not path.is_file():
        write_redshift_h5(path, cfg.data.samples, cfg.seed, simulator_config(cfg), progress=progress)
    data = load_redshift_h5(path)
    n = len(data.label)
    train, val = train_validation_split(n, cfg.data.validation_fraction, cfg.seed)
    if len(train) < max(cfg.training.workers, 1) * (2 if cfg.training.data_distribution == "disjoint" else 1):
        raise DataError(f"{path}: {len(train)} training samples are too few for {cfg.training.workers} workers")
    return PreparedData(path, train, val, n)


def run(cfg: ExperimentConfig, run_dir: Path, progress: bool | None = None, resume: bool = False) -> dict:
    """Train as ``cfg.training.mode`` says and return the summary (also written to ``summary.json``).

    ``resume``: continue a failed distributed run in ``run_dir`` from its last PS checkpoint.
    """
    run_dir = Path(run_dir)
    resumed = None
    if resume:
        cfg = cfg.model_copy(update={"faults": FaultSettings()})  # a resumed run must not re-inject its fault
        resumed = resume_point(cfg, run_dir)
        set_status(run_dir, "running", resumed_from_version=resumed["from_version"])
    else:
        write_yaml_atomic(run_dir / "config.yaml", config_to_dict(cfg))
    started = time.time()

    def train_and_summarize() -> dict:
        prepared = prepare(cfg, progress)
        if cfg.training.mode == "single":
            final = train_single(cfg, prepared, run_dir, progress)
        else:
            final = train_distributed(cfg, prepared, run_dir, resumed)
            if cfg.training.baseline:
                train_single(cfg, prepared, run_dir, progress)
        summary = summarize(cfg, run_dir, prepared, final, time.time() - started)
        if resumed:
            summary["resumed"] = resumed
        return summary

    return record_outcome(run_dir, train_and_summarize)


def _load_split(prepared: PreparedData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from ddl_commodity.data.redshift import load_redshift_h5

    data = load_redshift_h5(prepared.path)
    return (data.spectra[prepared.train_index], data.label[prepared.train_index],
            data.spectra[prepared.validation_index], data.label[prepared.validation_index])


def train_single(cfg: ExperimentConfig, prepared: PreparedData, run_dir: Path, progress: bool | None) -> dict:
    """The thesis's sequential CNN: plain Keras ``fit`` on one machine, logged like a worker (``single``)."""
    import keras

    from ddl_commodity.experiments.redshift_nodes import build_model
    from ddl_commodity.runs import write_jsonl_atomic

    x, y, x_val, y_val = _load_split(prepared)
    model = build_model(cfg)
    records: list[dict] = []

    class _Record(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.t0 = time.monotonic()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            records.append({
                "worker": "single", "epoch": epoch + 1, "loss": float(logs["loss"]),
                "accuracy": float(logs["accuracy"]),
                "val_loss": float(logs["val_loss"]) if "val_loss" in logs else None,
                "val_accuracy": float(logs["val_accuracy"]) if "val_accuracy" in logs else None,
                "samples": len(y), "seconds": time.monotonic() - self.t0, "time": time.time(),
            })

    verbose = "auto" if progress is None else (1 if progress else 0)
    model.fit(
        x, y, batch_size=cfg.training.batch_size, epochs=cfg.training.epochs, shuffle=True,
        validation_data=(x_val, y_val) if len(y_val) else None, callbacks=[_Record()],
        verbose=verbose if _is_tty() or progress else 0,
    )
    write_jsonl_atomic(run_dir / "workers" / "single.jsonl", records)
    if cfg.training.mode == "single":
        model.save(run_dir / "model.keras")
    return _final_metrics(model, x_val, y_val)


def _is_tty() -> bool:
    import sys

    return sys.stdout.isatty()


def _final_metrics(model, x_val: np.ndarray, y_val: np.ndarray) -> dict:
    if not len(y_val):
        return {}
    loss, acc = model.evaluate(x_val, y_val, verbose=0)
    return {"val_loss": float(loss), "val_accuracy": float(acc)}


def resume_point(cfg: ExperimentConfig, run_dir: Path) -> dict:
    """Where a resumed run starts: the last checkpoint's version and the feed epochs it covers."""
    from ddl_commodity.ps.checkpoint import CHECKPOINT_FILE, load_checkpoint
    from ddl_commodity.runs import read_jsonl

    if cfg.training.mode != "distributed":
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


def train_distributed(
    cfg: ExperimentConfig, prepared: PreparedData, run_dir: Path, resumed: dict | None = None
) -> dict:
    """TFoS Spark-input run: 1 PS task + M workers fed with RDD bundles (Figs 4.2, 5.2)."""
    from pyspark import SparkContext
    from tensorflowonspark import TFCluster, TFSparkNode

    from ddl_commodity.cluster.collector import RunCollector
    from ddl_commodity.cluster.failfast import Watchdog, require_executors, spark_error
    from ddl_commodity.cluster.spark import tfos_spark_conf
    from ddl_commodity.data.rdd import epoch_feed_rdd, indexed_records, shard_assignment
    from ddl_commodity.experiments.nodes import FaultInjection, NodeArgs
    from ddl_commodity.experiments.redshift_nodes import build_model, main_fun, ps_address
    from ddl_commodity.ps import ParameterServerClient

    t = cfg.training
    x_all, y_all = prepared.load()
    val_file = run_dir / "validation.npz"
    np.savez(val_file, x=x_all[prepared.validation_index], y=y_all[prepared.validation_index])

    sc = SparkContext.getOrCreate(tfos_spark_conf(cfg))
    secret = secrets.token_urlsafe(24)
    collector = RunCollector(run_dir, secret, host=sc.getConf().get("spark.driver.host", cfg.cluster.host),
                             on_record=_EpochPrinter(t.epochs), max_message_bytes=cfg.ps.max_message_mb * 2**20)
    first_epoch = 0
    if resumed:
        first_epoch = resumed["first_epoch"]
        for stream, records in _surviving_records(run_dir, resumed).items():
            collector.preload(stream, records)
    collector.start()
    losses = _WorkerLossHandler(sc, collector, cfg, secret) if t.tolerate_worker_loss else None
    watchdog = Watchdog(sc, collector, TFCluster.tf_status, cfg.cluster.heartbeat_timeout_s,
                        on_silent=losses.on_silent if losses else None)
    cluster = None
    live_per_epoch: dict[int, int] = {}
    try:
        require_executors(sc, cfg)
        sc.addFile(str(val_file))
        if resumed:
            from ddl_commodity.ps.checkpoint import CHECKPOINT_FILE

            sc.addFile(str(run_dir / CHECKPOINT_FILE))
        # ~1 MiB per slice: Spark ships parallelized data inside the tasks and warns above 1000 KiB.
        slices = max(sc.defaultParallelism, int(x_all.nbytes // 2**20) + 1)
        records = indexed_records(sc, x_all, y_all, slices=slices)
        if losses is None:
            shards = shard_assignment(prepared.num_rows, prepared.train_index, t.workers, cfg.seed)
            feed = epoch_feed_rdd(sc, records, shards, t.workers, t.epochs, t.data_distribution,
                                  t.batch_size * t.feed_bundle_batches, cfg.seed, first_epoch=first_epoch)
        else:
            records = records.cache()  # every epoch's job reads it again
        fault = FaultInjection(**cfg.faults.model_dump())
        args = NodeArgs(config_to_dict(cfg), secret, collector.address, val_file.name, fault=fault,
                        driver_lost_s=cfg.cluster.failure_timeout_s / 2, first_epoch=first_epoch,
                        resume_checkpoint="ps.npz" if resumed else "")
        watchdog.start()
        cluster = TFCluster.run(sc, main_fun, args, cfg.tf_nodes, num_ps=1,
                                input_mode=TFCluster.InputMode.SPARK,
                                reservation_timeout=int(cfg.cluster.startup_timeout_s),
                                log_dir=str(run_dir / "tflogs"), release_port=True)
        record_cluster_info(run_dir, cluster.cluster_info)
        ps_node = next(n for n in cluster.cluster_info if n["job_name"] == "ps")
        ps_addr = ps_address(f"{ps_node['host']}:{ps_node['port']}", cfg)
        watchdog.ps_reachable = lambda: _ps_reachable(ps_addr, secret)
        if losses is None:
            cluster.train(feed, num_epochs=1, feed_timeout=int(cfg.ps.push_timeout_s) + 60)
        else:
            losses.ps_address = ps_addr
            live_per_epoch = _feed_epoch_by_epoch(sc, cluster, records, prepared, cfg, losses, first_epoch)
        # End every (live) worker's feed, let them push their last update, then take the final weights.
        live = losses.live_workers() if losses else t.workers
        workers_rdd = sc.parallelize(range(live), live)
        workers_rdd.foreachPartition(TFSparkNode.shutdown(cluster.cluster_info, 0, cluster.queues))
        with ParameterServerClient(ps_addr, secret, worker=-1, timeout=cfg.ps.push_timeout_s) as driver:
            _wait_workers_finished(driver, collector, cfg)
            version, weights = driver.pull()
            ps_stats = driver.stats()
        cluster.shutdown(timeout=int(cfg.ps.push_timeout_s) + 120)
        cluster = None
    except UserInputError:
        raise
    except (Exception, SystemExit) as err:  # TFoS calls sys.exit(1) when a node fails during start-up
        failure = watchdog.failure_message() or spark_error(str(err))
        raise RunFailed(f"distributed run failed: {failure}") from None
    finally:
        watchdog.stop()
        collector.abort()
        if cluster is not None:  # failed mid-run
            sc.cancelAllJobs()
            # Keep the collector up for a few heartbeat periods so every surviving node hears "abort" and
            # exits by itself (on a real cluster nobody else would stop its TF process).
            time.sleep(3 * args.heartbeat_s)
        collector.stop()
        sc.stop()

    model = build_model(cfg)
    model.set_weights(weights)
    model.save(run_dir / "model.keras")
    final = _final_metrics(model, x_all[prepared.validation_index], y_all[prepared.validation_index])
    final.update({"ps_version": version, "ps": ps_stats})
    if losses is not None:
        final["worker_losses"] = list(losses.losses)
        final["live_workers_per_epoch"] = live_per_epoch
    return final


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

    def __init__(self, sc, collector, cfg: ExperimentConfig, secret: str) -> None:
        self._sc, self._collector, self._cfg, self._secret = sc, collector, cfg, secret
        self._lock = threading.Lock()
        self.losses: list[dict] = []
        self.ps_address: str | None = None
        self.feed_epoch: int | None = None

    def live_workers(self) -> int:
        with self._lock:
            return self._cfg.training.workers - len(self.losses)

    def _executor_of(self, worker: int) -> str | None:
        joined = [r for r in list(self._collector.records.get("ps", []))
                  if r.get("event") == "joined" and r.get("worker") == worker]
        return str(joined[-1]["executor"]) if joined and joined[-1].get("executor") is not None else None

    def on_silent(self, node: str, seconds: float) -> bool:
        from ddl_commodity.ps import ParameterServerClient

        if self.ps_address is None or not node.startswith("worker-") or self.live_workers() <= 1:
            return False
        worker = int(node.removeprefix("worker-"))
        executor = self._executor_of(worker)
        if executor is None:
            return False
        loss = {"worker": node, "time": time.time(), "detected_by": "heartbeat silence",
                "silent_seconds": round(seconds, 1), "feed_epoch": self.feed_epoch, "executor": executor}
        try:
            with ParameterServerClient(self.ps_address, self._secret, worker=worker, timeout=30.0) as ps:
                stats = ps.finish(reason="lost", detail={k: loss[k] for k in ("detected_by", "silent_seconds",
                                                                              "feed_epoch", "executor")})
            loss["executor_released"] = bool(self._sc._jsc.sc().killExecutor(executor))
        except Exception as err:  # the run cannot go on without the PS or Spark: fail as usual
            log.error("could not remove lost %s: %s", node, err)
            return False
        loss["s_effective"] = stats.get("s_effective")
        with self._lock:
            self.losses.append(loss)
        print(f"  {node} lost (no heartbeat for {seconds:.0f} s): continuing with {self.live_workers()} "
              f"workers, PS s = {loss['s_effective']}", flush=True)
        return True


def _feed_epoch_by_epoch(
    sc, cluster, records, prepared: PreparedData, cfg: ExperimentConfig, losses: _WorkerLossHandler,
    first_epoch: int,
) -> dict[int, int]:
    """One Spark job per feed epoch, each cut into as many partitions as workers are alive at its start.

    After a loss the training set is dealt among the live workers (a disjoint shard per live worker), so
    no data is dropped and no partition waits for a worker that is gone. Returns {feed epoch: workers fed}.
    """
    from ddl_commodity.data.rdd import epoch_feed_rdd, shard_assignment

    t = cfg.training
    plan: dict[int, int] = {}
    for epoch in range(first_epoch, t.epochs):
        live = losses.live_workers()
        losses.feed_epoch = epoch
        plan[epoch] = live
        shards = shard_assignment(prepared.num_rows, prepared.train_index, live, cfg.seed)
        before = set(sc._jsc.getPersistentRDDs().keySet())
        feed = epoch_feed_rdd(sc, records, shards, live, epoch + 1, t.data_distribution,
                              t.batch_size * t.feed_bundle_batches, cfg.seed, first_epoch=epoch)
        cluster.train(feed, num_epochs=1, feed_timeout=int(cfg.ps.push_timeout_s) + 60)
        persisted = sc._jsc.getPersistentRDDs()
        for rdd_id in set(persisted.keySet()) - before:  # this epoch's cached training rows
            persisted.get(rdd_id).unpersist()
    return plan


def _wait_workers_finished(driver, collector, cfg: ExperimentConfig) -> None:
    deadline = time.monotonic() + cfg.ps.push_timeout_s
    while driver.stats().get("live_workers", 0) > 0:
        if collector.failure.is_set():
            raise RunFailed("a node failed while finishing")
        if time.monotonic() > deadline:
            raise RunFailed("workers did not finish their last update in time")
        time.sleep(0.2)


class _EpochPrinter:
    """One line per finished worker epoch on the driver's stdout: progress that also reads well in CI logs."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def __call__(self, stream: str, r: dict) -> None:
        if stream.startswith("workers/"):
            val = f", val accuracy {r['val_accuracy']:.4f}" if r.get("val_accuracy") is not None else ""
            print(f"  {r['worker']} epoch {r['epoch']}/{self.epochs}: loss {r['loss']:.4f}, accuracy "
                  f"{r['accuracy']:.4f}{val} ({r['seconds']:.1f} s, PS version {r['ps_version']})", flush=True)


def summarize(cfg: ExperimentConfig, run_dir: Path, prepared: PreparedData, final: dict, seconds: float) -> dict:
    """``summary.json``: per-worker epochs to plateau for every criterion, final metrics, mode checks."""
    from ddl_commodity.report.curves import load_worker_curves, plot_curves
    from ddl_commodity.report.early_stopping import epochs_to_plateau
    from ddl_commodity.runs import read_jsonl

    curves = load_worker_curves(run_dir)
    plateau = {}
    for c in cfg.early_stopping:
        key = f"{c.monitor}/patience={c.patience}/min_delta={c.min_delta:g}"
        plateau[key] = {
            name: epochs_to_plateau([r[c.monitor] for r in recs if r.get(c.monitor) is not None], c.monitor,
                                    c.patience, c.min_delta)
            for name, recs in curves.items()
        }
    if curves:
        plot_curves(curves, run_dir / "curves.png", title=f"{cfg.name}: {describe(cfg)}")
    workers = {
        name: {"epochs": len(recs), "final_loss": recs[-1]["loss"], "final_accuracy": recs[-1]["accuracy"],
               "final_val_accuracy": recs[-1].get("val_accuracy")}
        for name, recs in curves.items()
    }
    losses = final.pop("worker_losses", None)
    live_per_epoch = final.pop("live_workers_per_epoch", None)
    summary = {
        "name": cfg.name, "experiment": cfg.experiment, "mode": cfg.training.mode,
        "description": describe(cfg), "wall_seconds": round(seconds, 2), "data": str(prepared.path),
        "train_samples": len(prepared.train_index),
        "validation_samples": len(prepared.validation_index),
        "workers": workers, "epochs_to_plateau": plateau, "final": final,
        "curves": "curves.png" if curves else None,
    }
    if cfg.training.mode == "distributed":
        summary["data_distribution_check"] = check_distribution(cfg, prepared, curves, live_per_epoch, losses)
        summary["ps_updates"] = sum(r.get("event", "applied") == "applied" for r in read_jsonl(run_dir / "ps.jsonl"))
        if cfg.training.tolerate_worker_loss:
            summary["worker_losses"] = losses or []
            summary["live_workers_per_epoch"] = {str(e): n for e, n in (live_per_epoch or {}).items()}
    return summary


def describe(cfg: ExperimentConfig) -> str:
    """One line saying what kind of run ``cfg`` is."""
    t = cfg.training
    if t.mode == "single":
        return "single machine (sequential CNN)"
    return f"{t.workers} workers, {t.data_distribution} data, s={cfg.ps.s}, lambda={cfg.ps.staleness}"


def check_distribution(
    cfg: ExperimentConfig, prepared: PreparedData, curves: dict[str, list[dict]],
    live_per_epoch: dict[int, int] | None = None, losses: list[dict] | None = None,
) -> dict:
    """Do the workers' index digests prove the configured data distribution? (DESIGN: never pass silently.)

    Every worker epoch's digest must equal the digest of the rows its shard should hold: the whole training
    set for ``same``; for ``disjoint`` the seeded 1/L shard, L being the workers fed that epoch (M, or fewer
    after a tolerated loss: ``live_per_epoch``). Each feed epoch must have gone to L distinct workers (Spark
    may hand two partitions to one executor) and, for ``disjoint``, used every shard once. In an epoch during
    which a worker was lost (``losses``), a live worker may have re-run the dead one's partition, and a shard
    the dead worker took with it is reported under ``lost_shards`` rather than as a problem.
    """
    from ddl_commodity.data.rdd import index_digest, shard_assignment

    live_per_epoch, losses = live_per_epoch or {}, losses or []
    m = cfg.training.workers
    expected_by_count: dict[int, dict[int, str]] = {}

    def expected(count: int) -> dict[int, str]:
        if count not in expected_by_count:
            if cfg.training.data_distribution == "same":
                expected_by_count[count] = dict.fromkeys(range(count), index_digest(prepared.train_index))
            else:
                shards = shard_assignment(prepared.num_rows, prepared.train_index, count, cfg.seed)
                expected_by_count[count] = {k: index_digest(np.flatnonzero(shards == k)) for k in range(count)}
        return expected_by_count[count]

    records = [r for name, recs in curves.items() if name != "single" for r in recs]
    problems = [
        f"{r['worker']} epoch {r['epoch']}: indices do not match shard {r['shard']} ({r['index_count']} seen)"
        for r in records if expected(live_per_epoch.get(r["feed_epoch"], m)).get(r["shard"]) != r["index_digest"]
    ]
    by_epoch: dict[int, list[dict]] = {}
    for r in records:
        by_epoch.setdefault(r["feed_epoch"], []).append(r)
    lost_shards = []
    for e, recs in sorted(by_epoch.items()):
        count = live_per_epoch.get(e, m)
        workers, shards = sorted(r["worker"] for r in recs), sorted(r["shard"] for r in recs)
        # A loss is detected up to one feed epoch late (the next epoch's partition for it blocks until then).
        lost_here = [x["worker"] for x in losses if x.get("feed_epoch") in (e, e + 1) and x["worker"] not in workers]
        if lost_here:
            missing = sorted(set(range(count)) - set(shards))
            if len(set(shards)) != len(shards) or not set(shards) <= set(range(count)):
                problems.append(f"feed epoch {e}: shards {shards} instead of each of {count} shards at most once")
            if missing:
                lost_shards.append({"feed_epoch": e, "shards": missing, "lost_workers": lost_here})
            continue
        if len(set(workers)) != count or len(recs) != count:
            problems.append(f"feed epoch {e} went to workers {workers}, not one partition to each of {count}")
        if cfg.training.data_distribution == "disjoint" and shards != list(range(count)):
            problems.append(f"feed epoch {e}: shards {shards} instead of each shard once")
    out = {"mode": cfg.training.data_distribution, "consistent": not problems, "problems": problems}
    if losses:
        out["lost_shards"] = lost_shards
    return out
