"""Benchmark 3: the staleness-weighted parameter server vs synchronous all-reduce, on the same redshift run.

One data set, one model, one feed, two ways of keeping M workers' replicas together, run one after the
other in one invocation on the same machine:

* **ps** - the redshift experiment exactly as users run it (``ddl run`` on the embedded cluster, thesis
  chapter 5): 1 PS task + M workers, Spark-input feeding of disjoint shards, each worker trains its replica
  for an epoch and then pushes ``dW`` to the :class:`~ddl_commodity.ps.StalenessWeightedServer`, which waits
  for ``s`` of the M updates and applies ``W <- W - (1/s) sum lambda(tau_j) dW_j``.
* **allreduce** - TFoS + ``tf.distribute.MultiWorkerMirroredStrategy``: M TFoS workers (``num_ps=0``) on a
  Spark standalone cluster of M workers, fed the same bundles by the same code (``indexed_chunks``,
  ``shard_assignment``, ``epoch_feed_rdd``: same split, same shards, same bundle size), every train step's
  gradients summed across the workers by the strategy's collective all-reduce (a ring over gRPC), so the
  replicas never differ. All-reduce needs the same step count on every worker: each runs
  ``ceil(smallest shard / batch)`` steps per epoch, so every sample is used, except one row of a larger
  shard when the training rows do not divide evenly by M and the smallest shard is a multiple of the batch.

Both build the same seeded model (``models/redshift_cnn.py``), Adam at the same learning rate and batch
size per worker. After every epoch each worker scores the global model on the same held-out 10%: the
all-reduce replica (identical on every worker), resp. the PS weights the worker adopted when it synchronised
(``global_val_*`` of the experiment's records; its replica's own score before synchronising is kept as
``replica_val_*`` and drawn dashed). Per run the benchmark takes the mean over workers per epoch, the
epoch's end as the last worker's, and the clock from the first worker's epoch-1 start (so Spark/TF start-up
is not counted; the JSON has the whole-job times too).

Reported: the validation-accuracy curve against epoch and against wall time, **epochs to plateau** for the
thesis's two early-stopping criteria (Tables 5.1/5.2: patience 1, min_delta 0.001; patience 3, 0.0001) on
validation accuracy and on training accuracy, and **wall time to the same validation accuracy**: the
target is the lower of the two runs' best mean validation accuracy (and 90% of it), the time is when a
run's mean first reaches it; likewise for the higher of the two runs' lowest validation loss.

Limits: all nodes share this machine's cores (a 2-core machine runs 3 resp. 2 TF processes), the worker
result files of the all-reduce run go to a local directory (this is a one-machine benchmark), and an
all-reduce worker that dies is caught by the collective timeout (``--collective-timeout``), not by the
experiment's heartbeat watchdog.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks._common import base_parser, environment, table, write_json

NAME = "async_vs_allreduce"
REPO = Path(__file__).resolve().parents[1]
RUNS = ("ps", "allreduce")
#: Tables 5.1 and 5.2 of the thesis: (patience, min_delta).
CRITERIA = ((1, 0.001), (3, 0.0001))
TARGET_FRACTIONS = (0.9, 1.0)


# --------------------------------------------------------------------------------------------- the config

def experiment_config(spec: dict, work: Path) -> dict:
    """The redshift experiment both runs share (a ``ddl run`` YAML document)."""
    return {
        "experiment": "redshift",
        "name": "bench-async-vs-allreduce",
        "description": "Benchmark 3: staleness-weighted PS side of the comparison",
        "seed": spec["seed"],
        "data": {"samples": spec["samples"], "validation_fraction": 0.1, "cache_dir": str(work / "data")},
        "model": {"filters": list(spec["filters"]), "kernel_size": 8, "dropout": spec["dropout"]},
        "training": {"mode": "data_parallel", "workers": spec["workers"], "epochs": spec["epochs"],
                     "batch_size": spec["batch_size"], "learning_rate": spec["learning_rate"],
                     "data_distribution": "disjoint", "baseline": False},
        "ps": {"s": spec["s"], "staleness": spec["staleness"]},
        "cluster": {"master": "embedded"},
        "early_stopping": [{"monitor": "accuracy", "patience": p, "min_delta": d} for p, d in CRITERIA],
        "output": {"runs_dir": str(work / "runs")},
    }


# ------------------------------------------------------------------------------------------ the PS run

def run_parameter_server(cfg_doc: dict, work: Path) -> dict:
    """``ddl run`` the experiment; per-worker epoch records from its run directory."""
    from ddl_commodity.artifacts.curves import load_worker_curves

    config = work / "ps.yaml"
    config.write_text(yaml.safe_dump(cfg_doc, sort_keys=False))
    started = time.monotonic()
    with open(work / "ps-run.log", "w") as log:
        proc = subprocess.run([sys.executable, "-m", "ddl_commodity.cli", "run", str(config), "--run-id", "ps",
                               "--no-progress"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=False,
                              timeout=3600)
    job_seconds = time.monotonic() - started
    if proc.returncode != 0:
        tail = (work / "ps-run.log").read_text()[-3000:]
        raise RuntimeError(f"the parameter-server run failed (exit {proc.returncode}):\n{tail}")
    run_dir = work / "runs" / "ps"
    summary = json.loads((run_dir / "summary.json").read_text())
    workers = {name: [_global_view(r) for r in recs]
               for name, recs in load_worker_curves(run_dir).items() if name.startswith("worker-")}
    return {"workers": workers, "job_seconds": job_seconds, "ps_updates": summary.get("ps_updates"),
            "final_model": {k: summary["final"][k] for k in ("val_loss", "val_accuracy", "ps_version")}}


def _global_view(record: dict) -> dict:
    """A PS worker's epoch record scored on the PS's global model (the weights it adopted at the epoch's end).

    Its replica's own pre-synchronisation scores stay, as ``replica_val_loss`` / ``replica_val_accuracy``.
    """
    out = {k: record[k] for k in ("worker", "epoch", "loss", "accuracy", "samples", "seconds", "time", "ps_version")}
    out.update(val_loss=record["global_val_loss"], val_accuracy=record["global_val_accuracy"],
               replica_val_loss=record["val_loss"], replica_val_accuracy=record["val_accuracy"])
    return out


# ------------------------------------------------------------------------------------ the all-reduce run

def allreduce_worker(args: dict, ctx: Any) -> None:
    """TFoS ``main_fun`` of one all-reduce worker: MWMS replica, custom step, epoch records to a file."""
    from ddl_commodity.data.rdd import Bundle
    from ddl_commodity.experiments.registry import experiment_and_config

    experiment, cfg = experiment_and_config(args["config"], "benchmark config")
    host = cfg.cluster.host  # one machine: every worker listens on loopback at the port TFoS reserved
    workers = [f"{host}:{a.rsplit(':', 1)[1]}" for a in ctx.cluster_spec["worker"]]
    os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": workers},
                                          "task": {"type": "worker", "index": ctx.task_index}})
    import tensorflow as tf

    from ddl_commodity.engines.data_parallel_node import build_model

    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=args["collective_timeout_s"])
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    with strategy.scope():
        model = build_model(experiment, cfg)  # variables mirrored; worker 0's initial values are broadcast
    step = _distributed_step(strategy, model)
    validation = np.load(args["validation_file"])
    x_val, y_val = validation["x"], validation["y"]
    bs, per_epoch = cfg.training.batch_size, args["steps_per_epoch"]
    out = Path(args["result_dir"]) / f"worker-{ctx.task_index}.jsonl"
    feed = ctx.get_data_feed(train_mode=True)
    epoch, taken, loss_sum, acc_sum, samples, started = 0, 0, 0.0, 0.0, 0, time.monotonic()
    while not feed.should_stop():
        items = feed.next_batch(1)
        if not items:
            break
        bundle = Bundle(*items[0])
        for a in range(0, len(bundle.y), bs):
            x, y = bundle.x[a:a + bs], bundle.y[a:a + bs]
            if taken == per_epoch:  # every worker must run the same number of steps (see steps_per_epoch)
                continue
            loss, acc = (float(v) for v in step(x, y))
            taken, loss_sum, acc_sum, samples = taken + 1, loss_sum + loss * len(y), acc_sum + acc * len(y), \
                samples + len(y)
        if bundle.last:
            epoch += 1
            val_loss, val_acc = _evaluate(model, x_val, y_val)
            record = {"worker": f"worker-{ctx.task_index}", "epoch": epoch, "loss": loss_sum / samples,
                      "accuracy": acc_sum / samples, "val_loss": val_loss, "val_accuracy": val_acc,
                      "samples": samples, "steps": taken, "seconds": time.monotonic() - started,
                      "time": time.time()}
            with open(out, "a") as f:
                f.write(json.dumps(record) + "\n")
            taken, loss_sum, acc_sum, samples, started = 0, 0.0, 0.0, 0, time.monotonic()


def _distributed_step(strategy, model):
    """One synchronous step: local gradients of the mean loss / M, summed across the workers by the optimizer.

    Keras 3's own ``train_on_batch`` cannot be used here: under a multi-worker strategy it reduces the
    scalar metrics with ``strategy.reduce("MEAN", v, axis=0)`` and fails ("Invalid reduction dimension 0
    for input with 0 dimensions"; Keras 3.15, TF 2.21). Its optimizer does the cross-worker sum itself
    (``_all_reduce_sum_gradients`` in replica context), so the step below is what ``fit`` would do.
    """
    import keras
    import tensorflow as tf

    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    replicas = strategy.num_replicas_in_sync

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            p = model(x, training=True)
            # A Keras 3 loss called under a strategy already divides by the replica count, so the summed
            # gradients are those of the mean loss over the global batch.
            scaled = loss_fn(y, p)
        grads = tape.gradient(scaled, model.trainable_weights)
        model.optimizer.apply_gradients(zip(grads, model.trainable_weights, strict=True))
        correct = tf.equal(tf.argmax(p, axis=-1, output_type=tf.int32), tf.cast(y, tf.int32))
        return scaled * replicas, tf.reduce_mean(tf.cast(correct, tf.float32))

    @tf.function
    def step(x, y):
        out = strategy.run(replica_step, args=(x, y))
        return [strategy.experimental_local_results(v)[0] for v in out]

    return step


def _evaluate(model, x: np.ndarray, y: np.ndarray, batch: int = 256) -> tuple[float, float]:
    """Mean sparse cross-entropy and accuracy of the (local copy of the) model, outside the strategy."""
    if not len(y):
        return float("nan"), float("nan")
    probs = np.concatenate([np.asarray(model(x[a:a + batch], training=False)) for a in range(0, len(y), batch)])
    loss = -np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0)).mean()
    return float(loss), float((probs.argmax(axis=1) == y).mean())


def run_allreduce(cfg_doc: dict, work: Path, collective_timeout_s: float) -> dict:
    """TFoS + MWMS on a Spark standalone cluster of M one-core workers, fed as the PS run is fed."""
    from pyspark import SparkContext, cloudpickle
    from tensorflowonspark import TFCluster

    import benchmarks
    from ddl_commodity.cluster.local import LocalStandaloneCluster
    from ddl_commodity.data.rdd import epoch_feed_rdd, indexed_chunks, shard_assignment
    from ddl_commodity.experiments.registry import experiment_and_config
    from ddl_commodity.runtime.feed import end_feed, feed_partition
    from ddl_commodity.runtime.spark import tfos_spark_conf

    cloudpickle.register_pickle_by_value(benchmarks)  # the executors cannot import this directory
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    experiment, cfg = experiment_and_config(cfg_doc, "benchmark config")
    t, m = cfg.training, cfg.training.workers
    prepared = experiment.dataset(cfg, progress=False)  # the PS run's cached file: same rows, same split
    x_all, y_all = prepared.flat(), prepared.labels
    val_file = work / "validation.npz"
    np.savez(val_file, x=x_all[prepared.validation_index], y=y_all[prepared.validation_index])
    shards = shard_assignment(prepared.num_rows, prepared.train_index, m, cfg.seed)
    # Shards differ by at most one row: the last, partial batch of the smallest shard sets the step count.
    steps_per_epoch = -(-int(min(np.bincount(shards[shards >= 0], minlength=m))) // t.batch_size)
    result_dir = work / "allreduce-results"
    result_dir.mkdir()
    args = {"config": cfg_doc, "validation_file": str(val_file), "result_dir": str(result_dir),
            "steps_per_epoch": steps_per_epoch, "collective_timeout_s": collective_timeout_s}
    started = time.monotonic()
    with LocalStandaloneCluster(workers=m, cores=1, memory=cfg.cluster.worker_memory, host=cfg.cluster.host,
                                state_dir=work / "cluster-allreduce",
                                startup_timeout_s=cfg.cluster.startup_timeout_s) as spark_cluster:
        conf = tfos_spark_conf(cfg).setMaster(spark_cluster.master_url).set("spark.cores.max", str(m))
        conf.set("spark.ui.enabled", "false")
        sc = SparkContext(conf=conf)
        sc.setLogLevel("ERROR")
        cluster = None
        try:
            slices = max(sc.defaultParallelism, int(x_all.nbytes // (8 * 2**20)) + 1)  # as the experiment
            records = indexed_chunks(sc, x_all, y_all, slices, work).cache()
            feed = epoch_feed_rdd(sc, records, shards, m, t.epochs, "disjoint", t.batch_size * t.feed_bundle_batches,
                                  cfg.seed)
            cluster = TFCluster.run(sc, allreduce_worker, args, m, num_ps=0, input_mode=TFCluster.InputMode.SPARK,
                                    reservation_timeout=int(cfg.cluster.startup_timeout_s), release_port=True)
            feed.foreachPartition(feed_partition(cluster.cluster_info, collective_timeout_s + 60))
            sc.parallelize(range(m), m).foreachPartition(end_feed(cluster.cluster_info, cluster.queues))
            cluster.shutdown(timeout=int(collective_timeout_s) + 60)
            cluster = None
        finally:
            if cluster is not None:
                sc.cancelAllJobs()
            sc.stop()
    workers = {}
    for path in sorted(result_dir.glob("worker-*.jsonl")):
        workers[path.stem] = [json.loads(line) for line in path.read_text().splitlines()]
    if sorted(len(r) for r in workers.values()) != [t.epochs] * m:
        raise RuntimeError(f"all-reduce run: expected {t.epochs} epochs from each of {m} workers, got "
                           f"{ {k: len(v) for k, v in workers.items()} }")
    return {"workers": workers, "job_seconds": time.monotonic() - started, "steps_per_epoch": steps_per_epoch}


def run_allreduce_once_more_on_a_port_race(cfg_doc: dict, work: Path, collective_timeout_s: float) -> dict:
    """:func:`run_allreduce`, started once more if TensorFlow could not bind a worker's port. TFoS frees the
    port it reserved for a worker before the worker's TensorFlow binds it; another process can take it in
    between, and TensorFlow then fails with "Could not start gRPC server"."""
    try:
        return run_allreduce(cfg_doc, work, collective_timeout_s)
    except Exception as err:
        if "Could not start gRPC server" not in str(err):
            raise
    print("    a worker's reserved port was taken before TensorFlow bound it: starting the run again", flush=True)
    again = work / "again"
    again.mkdir()
    return run_allreduce(cfg_doc, again, collective_timeout_s)


# -------------------------------------------------------------------------------------------- analysis

METRICS = ("loss", "accuracy", "val_loss", "val_accuracy", "replica_val_loss", "replica_val_accuracy")


def combine(workers: dict[str, list[dict]]) -> list[dict]:
    """Per epoch: mean over workers of the metrics, the last worker's end, seconds since the run's start."""
    epochs = min(len(r) for r in workers.values())
    t0 = min(recs[0]["time"] - recs[0]["seconds"] for recs in workers.values())
    out = []
    for e in range(epochs):
        rows = [recs[e] for recs in workers.values()]
        out.append({"epoch": e + 1, "seconds": max(r["time"] for r in rows) - t0,
                    **{k: float(np.mean([r[k] for r in rows])) for k in METRICS if k in rows[0]}})
    return out


def _first_reaching(curve: list[dict], metric: str, target: float) -> dict:
    better = (lambda v: v >= target - 1e-12) if metric == "val_accuracy" else (lambda v: v <= target + 1e-12)
    hit = next(c for c in curve if better(c[metric]))
    return {"epoch": hit["epoch"], "seconds": hit["seconds"]}


def analyse(runs: dict[str, dict]) -> dict:
    """Epochs to plateau per criterion, and time/epochs to validation targets both runs reach.

    Targets: the lower of the two runs' best mean validation accuracy (and 90% of it), and the higher of
    their lowest mean validation loss (the loss target still means something when a short run's accuracy
    has not left zero).
    """
    from ddl_commodity.artifacts.early_stopping import epochs_to_plateau

    curves = {name: combine(r["workers"]) for name, r in runs.items()}
    best = {name: max(c["val_accuracy"] for c in curve) for name, curve in curves.items()}
    lowest_loss = {name: min(c["val_loss"] for c in curve) for name, curve in curves.items()}
    plateau = {name: {f"{monitor}/patience={p}/min_delta={d:g}":
                      epochs_to_plateau([c[monitor] for c in curve], "accuracy", p, d)
                      for monitor in ("val_accuracy", "accuracy") for p, d in CRITERIA}
               for name, curve in curves.items()}
    wanted = [("val_accuracy", f, min(best.values()) * f) for f in TARGET_FRACTIONS]
    wanted.append(("val_loss", 1.0, max(lowest_loss.values())))
    targets = []
    for metric, fraction, value in wanted:
        row: dict[str, Any] = {"metric": metric, "fraction": fraction, "value": value}
        row.update({name: _first_reaching(curve, metric, value) for name, curve in curves.items()})
        row["time_ratio_allreduce_over_ps"] = row["allreduce"]["seconds"] / row["ps"]["seconds"]
        targets.append(row)
    per_epoch = {name: float(np.median(np.diff([0.0] + [c["seconds"] for c in curve])))
                 for name, curve in curves.items()}
    return {"curves": curves, "best_val_accuracy": best, "lowest_val_loss": lowest_loss,
            "epochs_to_plateau": plateau, "targets": targets, "median_epoch_seconds": per_epoch,
            "epoch_time_ratio_allreduce_over_ps": per_epoch["allreduce"] / per_epoch["ps"]}


def plot(analysis: dict, out: Path) -> Path:
    """Validation accuracy against epoch and against seconds, both runs; the targets as dotted lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    labels = {"ps": "staleness-weighted PS (ours)", "allreduce": "TFoS + MultiWorkerMirroredStrategy"}
    for name, curve in analysis["curves"].items():
        axes[0].plot([c["epoch"] for c in curve], [c["val_accuracy"] for c in curve], marker="o", label=labels[name])
        axes[1].plot([c["seconds"] for c in curve], [c["val_accuracy"] for c in curve], marker="o",
                     label=labels[name])
        if "replica_val_accuracy" in curve[0]:
            for ax, x in zip(axes, ("epoch", "seconds"), strict=True):
                ax.plot([c[x] for c in curve], [c["replica_val_accuracy"] for c in curve], linestyle="--",
                        color=ax.lines[-1].get_color(), alpha=0.6, label="its workers' replicas, before syncing")
    for ax, xlabel in zip(axes, ("epoch", "seconds since the first epoch began"), strict=True):
        for t in analysis["targets"]:
            if t["metric"] == "val_accuracy":
                ax.axhline(t["value"], color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation accuracy")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Benchmark 3: asynchronous PS vs synchronous all-reduce (redshift CNN)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _target_label(t: dict) -> str:
    if t["metric"] == "val_loss":
        return f"time to val loss {t['value']:.3f}"
    return f"time to val acc {t['value']:.3f} ({t['fraction']:.0%} of common best)"


def summary_table(analysis: dict, runs: dict[str, dict]) -> str:
    rows = []
    for name in RUNS:
        p = analysis["epochs_to_plateau"][name]
        rows.append((name, f"{analysis['best_val_accuracy'][name]:.3f}",
                     *(str(p[f"val_accuracy/patience={pa}/min_delta={d:g}"] or "none") for pa, d in CRITERIA),
                     *(f"{t[name]['seconds']:.0f} s (epoch {t[name]['epoch']})" for t in analysis["targets"]),
                     analysis["median_epoch_seconds"][name], runs[name]["job_seconds"]))
    headers = ["run", "best val acc",
               *(f"epochs to plateau (val acc, patience {p}, min_delta {d:g})" for p, d in CRITERIA),
               *(_target_label(t) for t in analysis["targets"]), "s / epoch (median)", "whole job s"]
    return table(headers, rows)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, help="simulated spectra, 10%% held out (default 800 quick, 4000 full)")
    parser.add_argument("--epochs", type=int, help="epochs of each run (default 2 quick, 20 full)")
    parser.add_argument("--workers", type=int, default=2, help="M, the training workers of each run (default 2)")
    parser.add_argument("--batch-size", type=int, default=32, help="per worker (default 32)")
    parser.add_argument("--filters", type=int, nargs=2, metavar=("F1", "F2"),
                        help="conv filter counts (default 2 2 quick, 4 4 full; the thesis network is 8 8)")
    parser.add_argument("--s", type=int, help="updates the PS waits for (default M: every worker)")
    parser.add_argument("--staleness", default="inverse", help="lambda(tau) of the PS (default inverse: 1/(1+tau))")
    parser.add_argument("--collective-timeout", type=float, default=300.0,
                        help="seconds an all-reduce may wait for a peer before the run fails (default 300)")
    parser.add_argument("--keep", type=Path, help="keep both runs' files in this directory (default: removed)")
    args = parser.parse_args(argv)
    if args.workers < 2:
        parser.error("--workers must be at least 2 (one worker has nothing to synchronise)")
    spec = {"samples": args.samples or (800 if args.quick else 4000),
            "epochs": args.epochs or (2 if args.quick else 20), "workers": args.workers,
            "batch_size": args.batch_size, "dropout": 0.1, "learning_rate": 1e-3,
            "filters": list(args.filters or ((2, 2) if args.quick else (4, 4))), "seed": 7,
            "s": args.s or args.workers, "staleness": args.staleness}
    if not 1 <= spec["s"] <= args.workers:
        parser.error("--s must be between 1 and --workers")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from ddl_commodity.errors import ConfigError
    from ddl_commodity.experiments.registry import parse_config
    from ddl_commodity.models.redshift_cnn import parameter_count

    env = environment()
    print(f"async PS vs all-reduce ({'quick' if args.quick else 'full'} mode): {spec['samples']} spectra, "
          f"{spec['epochs']} epochs, M = {spec['workers']}, s = {spec['s']}, batch {spec['batch_size']}, "
          f"filters {spec['filters']}, {env['cpu_count']} CPUs", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ddl-bench-allreduce-") as tmp:
        work = Path(args.keep or tmp).resolve()
        work.mkdir(parents=True, exist_ok=True)
        cfg_doc = experiment_config(spec, work)
        try:
            parse_config(cfg_doc, "benchmark config")
        except ConfigError as err:
            parser.error(str(err))
        print("  [1/2] staleness-weighted PS (ddl run) ...", flush=True)
        runs = {"ps": run_parameter_server(cfg_doc, work)}
        print("  [2/2] TFoS + MultiWorkerMirroredStrategy ...", flush=True)
        runs["allreduce"] = run_allreduce_once_more_on_a_port_race(cfg_doc, work, args.collective_timeout)
    analysis = analyse(runs)
    spec["parameters"] = parameter_count(tuple(spec["filters"]))
    env["load_average_1m_end"] = os.getloadavg()[0]
    out = Path(args.out)
    figure = plot(analysis, out.with_suffix(".png"))
    document = {"benchmark": NAME, "mode": "quick" if args.quick else "full", "environment": env, "settings": spec,
                "runs": {name: {k: v for k, v in r.items() if k != "workers"} | {"worker_epochs": r["workers"]}
                         for name, r in runs.items()},
                **analysis, "figure": figure.name, "seconds": time.monotonic() - started}
    write_json(out, document)
    print(summary_table(analysis, runs))
    for t in analysis["targets"]:
        print(f"{_target_label(t)}: all-reduce / PS = {t['time_ratio_allreduce_over_ps']:.2f}")
    print(f"wrote {out} and {figure} ({document['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
