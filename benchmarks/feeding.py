"""Benchmark 1: how fast can one worker train the redshift CNN, depending on how its data reach it?

The same simulated spectra (one HDF5 file), the same model (``models/redshift_cnn.py``, seeded, small
filters by default), the same batch size and the same number of samples, fed four ways, measured side
by side in one run:

* **(c) in-memory** - a plain single-process Keras loop (``train_on_batch``) over NumPy arrays already
  in memory: the upper bound. Measured first and again last, to show how much the (shared) machine drifted.
* **(b) TensorFlow input** - what a TFoS ``InputMode.TENSORFLOW`` worker does: read its local HDF5 file
  itself, here with ``tf.data`` (a generator of batch-sized ``h5py`` slices in a per-epoch shuffled order,
  prefetched), in this process.
* **(a) Spark input** - a real TFoS cluster (``TFCluster.run``, ``InputMode.SPARK``, one worker, no PS) on a
  Spark standalone cluster of one 1-core worker started with
  :class:`~ddl_commodity.cluster.local.LocalStandaloneCluster`, fed as the toolkit feeds
  (:func:`ddl_commodity.runtime.feed.feed_partition`: TFoS's ``cluster.train`` without TensorFlow in the
  feeding Python worker, and seeing the queue drained at once instead of TFoS's 1 s sleeps):

  - ``records``: one spectrum per RDD record, ``(x, y)``, as TFoS's examples do; the worker asks
    ``DataFeed.next_batch(batch_size)`` and stacks the items;
  - ``bundles``: our feeding (:mod:`ddl_commodity.data.rdd`): whole mini-batches per record, as the
    redshift experiment runs (``epoch_feed_rdd``, ``feed_bundle_batches`` batches per bundle), read as its
    workers read them (:class:`ddl_commodity.runtime.feed.Prefetched`: a thread takes the next bundles off
    the queue while the model trains), their arrays through shared memory
    (:class:`ddl_commodity.runtime.feed.SharedItems`).

  Both RDDs come from the same cached ``zipWithIndex`` records; the records have one partition per epoch,
  the bundles one partition holding every epoch (as the experiment feeds a run).

With several workers (``--workers 1 3``, the full mode's default), the bundles mode runs again on a
standalone cluster of that many 1-core workers, every worker fed the whole set (``same``), against (c) in as
many processes at once whose clocks start together: samples/s is then all the trainers' samples over the
time from the first one's first batch to the last one's last step, on the same shared cores.

Every mode builds a fresh seeded model and takes three warm-up steps (tracing the train function) before
its clock starts; the Spark-input worker does so before the driver starts feeding. **samples/s** is
samples / the time from the first batch in hand to the end of the last train step; it includes every
later wait for data. **end-to-end** adds what comes before the first batch (for Spark input: from the
feed job's start, so job scheduling and the feeder's start). Each mode
also says how long its train steps took in total (``train_seconds``) and how long it waited for data
(``wait_seconds``, time not spent in train steps); the Spark-input worker splits that into
``fetch_seconds`` (blocked in ``DataFeed.next_batch`` after the first batch) and ``convert_seconds``
(stacking records into arrays, or slicing a bundle).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import base_parser, environment, table, write_json

NAME = "feeding"
NUM_BANDS = 1800
RESULT_WAIT_S = 300.0
WARM_UP_STEPS = 3


def _build_model(spec: dict):
    """The redshift CNN of ``spec`` (filters, kernel, dropout, learning rate, seed), compiled."""
    from ddl_commodity.config import TrainingSettingsBase
    from ddl_commodity.engines.training import compile_for_training
    from ddl_commodity.models.redshift_cnn import build_redshift_cnn

    model = build_redshift_cnn(tuple(spec["filters"]), spec["kernel_size"], spec["dropout"], seed=spec["seed"])
    return compile_for_training(model, TrainingSettingsBase(learning_rate=spec["learning_rate"], optimizer="adam"))


def _warm_up(model, batch_size: int) -> None:
    """A few train steps on zeros: trace the train function, fill the thread pools, before any clock starts."""
    for _ in range(WARM_UP_STEPS):
        model.train_on_batch(np.zeros((batch_size, NUM_BANDS), np.float32), np.zeros(batch_size, np.int32))


class _Clock:
    """Per-mode timing: first batch in hand, train-step time, samples and steps."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.train = 0.0
        self.samples = 0
        self.steps = 0

    def got_batch(self) -> None:
        if self.first is None:
            self.first = time.monotonic()

    def step(self, model, x: np.ndarray, y: np.ndarray) -> None:
        t = time.monotonic()
        model.train_on_batch(x, y)
        self.train += time.monotonic() - t
        self.samples += len(y)
        self.steps += 1

    def result(self, start: float, end: float | None = None) -> dict:
        end = time.monotonic() if end is None else end
        assert self.first is not None, "no batch arrived"
        steady = end - self.first
        return {"samples": self.samples, "steps": self.steps, "seconds": steady,
                "samples_per_s": self.samples / steady, "train_seconds": self.train,
                "wait_seconds": max(steady - self.train, 0.0), "end_to_end_seconds": end - start,
                "end_to_end_samples_per_s": self.samples / (end - start), "first": self.first, "end": end}


def in_memory(spec: dict, x: np.ndarray, y: np.ndarray, barrier=None) -> dict:
    """(c): Keras ``train_on_batch`` over arrays in memory, shuffled every epoch. ``barrier``: wait there after
    the warm-up (several trainers side by side start their clocks together)."""
    model = _build_model(spec)
    _warm_up(model, spec["batch_size"])
    if barrier is not None:
        barrier.wait()
    bs, clock = spec["batch_size"], _Clock()
    start = time.monotonic()
    for epoch in range(spec["epochs"]):
        order = np.random.default_rng([spec["seed"], epoch]).permutation(len(y))
        for a in range(0, len(y), bs):
            idx = order[a:a + bs]
            xb, yb = x[idx], y[idx]
            clock.got_batch()
            clock.step(model, xb, yb)
    return clock.result(start)


def tensorflow_input(spec: dict, h5_path: Path) -> dict:
    """(b): ``tf.data`` over the HDF5 file, batch-sized slices read with ``h5py``, prefetched."""
    import h5py
    import tensorflow as tf

    model = _build_model(spec)
    _warm_up(model, spec["batch_size"])
    bs, epochs, seed = spec["batch_size"], spec["epochs"], spec["seed"]

    def batches():
        with h5py.File(h5_path, "r") as f:
            n = f["label"].shape[0]
            starts = np.arange(0, n, bs)
            for epoch in range(epochs):
                for a in np.random.default_rng([seed, epoch]).permutation(starts):
                    yield f["spectra"][a:a + bs], f["label"][a:a + bs]

    clock = _Clock()
    start = time.monotonic()
    dataset = tf.data.Dataset.from_generator(batches, output_signature=(
        tf.TensorSpec((None, NUM_BANDS), tf.float32), tf.TensorSpec((None,), tf.int32))).prefetch(2)
    for xb, yb in dataset:
        clock.got_batch()
        clock.step(model, xb, yb)
    return clock.result(start)


def spark_worker(args: dict, ctx: Any) -> None:
    """TFoS ``main_fun`` of the single worker: train each phase's samples, write its timing, then drain."""
    from ddl_commodity.data.rdd import Bundle
    from ddl_commodity.runtime.feed import Prefetched

    spec, bs = args["spec"], args["spec"]["batch_size"]
    feed = ctx.get_data_feed(train_mode=True)
    bundles = None  # the worker's own reader, started with the bundles phase (the records phase reads by hand)
    result_dir = Path(args["result_dir"])
    for phase in args["phases"]:
        model = _build_model(spec)
        _warm_up(model, bs)
        if phase["style"] == "bundles" and bundles is None:
            bundles = iter(Prefetched(feed))
        tag = f"{phase['name']}-{ctx.task_index}"
        _write_json(result_dir / f"ready-{tag}.json", {"pid": os.getpid()})  # the driver feeds now
        clock, wanted = _Clock(), phase["samples"]
        fetch = convert = 0.0
        while clock.samples < wanted:
            t0 = time.monotonic()
            if phase["style"] == "records":
                items = feed.next_batch(min(bs, wanted - clock.samples))
                t1 = time.monotonic()
                if not items:
                    raise RuntimeError(f"feed ended after {clock.samples} of {wanted} samples")
                clock.got_batch()
                batches = [(np.stack([it[0] for it in items]), np.array([it[1] for it in items], np.int32))]
            else:
                item = next(bundles, None)
                t1 = time.monotonic()
                if item is None:
                    raise RuntimeError(f"feed ended after {clock.samples} of {wanted} samples")
                clock.got_batch()
                bundle = Bundle(*item)
                batches = [(bundle.x[a:a + bs], bundle.y[a:a + bs]) for a in range(0, len(bundle.y), bs)]
            t2 = time.monotonic()
            if clock.steps:  # the first fetch waits for the feed to start: not on the clock (see end-to-end)
                fetch += t1 - t0
            convert += t2 - t1
            for xb, yb in batches:
                clock.step(model, xb, yb)
        result = clock.result(clock.first or 0.0)
        result.update(fetch_seconds=fetch, convert_seconds=convert, pid=os.getpid())
        _write_json(result_dir / f"{tag}.json", result)
    for _ in bundles or ():  # marks the last bundle consumed, then waits for the driver's shutdown
        pass
    while not feed.should_stop():
        if not feed.next_batch(1):
            break


def _write_json(path: Path, document: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document))
    os.replace(tmp, path)


def _wait_for(path: Path, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the TFoS worker wrote no {path.name} within {timeout:.0f} s")
        time.sleep(0.1)
    return json.loads(path.read_text())


def benchmark_conf(master_url: str, name: str, workers: int):
    """The feeding benchmarks' SparkConf: ``workers`` one-core executors on loopback, one task each, reused
    Python workers, no UI."""
    from pyspark import SparkConf

    return (SparkConf().setMaster(master_url).setAppName(name)
            .set("spark.python.worker.reuse", "true").set("spark.executor.cores", "1")
            .set("spark.task.cpus", "1").set("spark.cores.max", str(workers)).set("spark.executor.memory", "1g")
            .set("spark.task.maxFailures", "1").set("spark.locality.wait", "0s")
            .set("spark.ui.enabled", "false").set("spark.ui.showConsoleProgress", "false")
            .set("spark.driver.host", "127.0.0.1").set("spark.driver.bindAddress", "127.0.0.1")
            .set("spark.executorEnv.TF_CPP_MIN_LOG_LEVEL", "2"))


def spark_input(spec: dict, x: np.ndarray, y: np.ndarray, work: Path, workers: int = 1,
                alone: Callable[[], dict] | None = None) -> tuple[dict, dict]:
    """(a): TFoS workers on a Spark standalone cluster of as many 1-core workers; with one, fed per-sample
    records, then bundles; with several, bundles only (each worker the whole set: ``same``), side by side.
    ``alone`` (c with as many trainers) is measured right before and right after the bundles, while the
    cluster waits: ``alone_before``, ``alone_after``."""
    from pyspark import SparkContext, cloudpickle
    from tensorflowonspark import TFCluster

    import benchmarks
    from ddl_commodity.cluster.local import LocalStandaloneCluster
    from ddl_commodity.data.rdd import epoch_feed_rdd, indexed_chunks, indexed_records, shard_assignment
    from ddl_commodity.runtime.feed import end_feed

    # The executors cannot import this directory: ship spark_worker and its helpers by value.
    cloudpickle.register_pickle_by_value(benchmarks)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # the driver JVM: loopback, not the hostname's address
    n, epochs, bs = len(y), spec["epochs"], spec["batch_size"]
    result_dir = work / f"worker-results-{workers}"
    result_dir.mkdir()
    styles = ("records", "bundles") if workers == 1 else ("bundles",)
    phases = [{"name": style, "style": style, "samples": n * epochs} for style in styles]
    timings: dict[str, Any] = {}
    t0 = time.monotonic()
    # Spark's default worker timeout, not the local cluster's 15 s: nothing here measures failure detection,
    # and with (c) training beside them a busy machine can keep every worker silent that long.
    with LocalStandaloneCluster(workers=workers, cores=1, memory="2g", state_dir=work / f"cluster-{workers}",
                                startup_timeout_s=120.0, worker_timeout_s=60.0) as spark_cluster:
        timings["cluster_start_seconds"] = time.monotonic() - t0
        sc = SparkContext(conf=benchmark_conf(spark_cluster.master_url, "ddl-benchmark-feeding", workers))
        sc.setLogLevel("ERROR")
        cluster = None
        try:
            slices = max(1, int(x.nbytes // (8 * 2**20)) + 1)  # ~8 MiB of rows per task, as the experiment does
            records = indexed_records(sc, x, y, slices, work).cache()
            records.count()  # materialise: neither feed pays for parallelising the data
            per_sample = records.map(lambda r: r[1]).coalesce(1)
            shards = shard_assignment(n, np.arange(n), workers, spec["seed"])
            chunks = indexed_chunks(sc, x, y, slices, work).cache()
            chunks.count()
            # One partition per worker holding every epoch, as the experiment feeds a run (data/rdd.py).
            bundles = epoch_feed_rdd(sc, chunks, shards, workers, epochs, "same", bs * spec["bundle_batches"],
                                     spec["seed"])
            t1 = time.monotonic()
            args = {"spec": spec, "phases": phases, "result_dir": str(result_dir)}
            cluster = TFCluster.run(sc, spark_worker, args, workers, num_ps=0,
                                    input_mode=TFCluster.InputMode.SPARK, reservation_timeout=180, release_port=True)
            timings["tfcluster_start_seconds"] = time.monotonic() - t1
            feeds = {"records": sc.union([per_sample] * epochs), "bundles": bundles}
            out = {}
            for phase in styles:
                if phase == "bundles" and alone is not None:
                    out["alone_before"] = alone()
                out[phase] = _feed_phase(phase, feeds[phase], cluster, result_dir, workers)
                if phase == "bundles" and alone is not None:
                    out["alone_after"] = alone()
            sc.parallelize(range(workers), workers).foreachPartition(end_feed(cluster.cluster_info, cluster.queues))
            cluster.server.stop()
            cluster = None
        finally:
            if cluster is not None:
                sc.cancelAllJobs()
            sc.stop()
    return out, timings


def _feed_phase(phase: str, rdd, cluster, result_dir: Path, workers: int) -> dict:
    """Feed one phase to every worker once all have built and warmed their model; their results combined."""
    from ddl_commodity.runtime.feed import SHARED_MEMORY, feed_partition

    for i in range(workers):
        _wait_for(result_dir / f"ready-{phase}-{i}.json", RESULT_WAIT_S)
    # Bundles go through shared memory, as the experiment feeds them (TfosSession.feed); the records' reader
    # is TFoS's own DataFeed, which reads the queue only.
    shared_root = SHARED_MEMORY / f"ddl-feed-benchmark-{os.getpid()}" if phase == "bundles" else None
    started = time.monotonic()
    try:
        rdd.foreachPartition(feed_partition(cluster.cluster_info, RESULT_WAIT_S,
                                            shared_root=shared_root and str(shared_root)))
    finally:
        if shared_root is not None:
            shutil.rmtree(shared_root, ignore_errors=True)
    fed = time.monotonic()
    results = [_wait_for(result_dir / f"{phase}-{i}.json", RESULT_WAIT_S) for i in range(workers)]
    r = combined(results) if workers > 1 else results[0]
    end = max(fed, r["end"])
    r.update(feed_job_seconds=fed - started, end_to_end_seconds=end - started,
             end_to_end_samples_per_s=r["samples"] / (end - started))
    return r


def combined(results: list[dict]) -> dict:
    """Trainers side by side as one: all their samples over the time from the first one's first batch to the
    last one's end (their clocks are the machine's monotonic clock); train and wait times summed."""
    first, end = min(r["first"] for r in results), max(r["end"] for r in results)
    out = {k: sum(r[k] for r in results) for k in ("samples", "steps", "train_seconds", "wait_seconds")}
    out.update(seconds=end - first, samples_per_s=out["samples"] / (end - first), first=first, end=end,
               end_to_end_seconds=max(r["end_to_end_seconds"] for r in results), trainers=len(results),
               per_trainer_samples_per_s=[r["samples_per_s"] for r in results])
    out["end_to_end_samples_per_s"] = out["samples"] / out["end_to_end_seconds"]
    for k in ("fetch_seconds", "convert_seconds"):
        if all(k in r for r in results):
            out[k] = sum(r[k] for r in results)
    return out


def in_memory_side_by_side(spec: dict, h5: Path, trainers: int) -> dict:
    """(c) in ``trainers`` processes at once, clocks started together: the upper bound for as many workers."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(trainers), ctx.Queue()
    procs = [ctx.Process(target=_in_memory_from_file, args=(spec, str(h5), barrier, results)) for _ in range(trainers)]
    for p in procs:
        p.start()
    try:
        out = [results.get(timeout=RESULT_WAIT_S) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    failed = [r for r in out if isinstance(r, str)]
    if failed:
        raise RuntimeError(f"an in-memory trainer failed: {failed[0]}")
    return combined(out)


def _in_memory_from_file(spec: dict, h5: str, barrier, results) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        from ddl_commodity.data.redshift import load_redshift_h5

        data = load_redshift_h5(Path(h5))
        results.put(in_memory(spec, data.spectra, data.label, barrier))
    except BaseException as err:  # the parent raises it
        barrier.abort()
        results.put(f"{type(err).__name__}: {err}")


def run(spec: dict, work: Path) -> dict:
    """Simulate the data, then measure (c), (b), (a) records, (c), (a) bundles, (c) and (c) again with one
    worker; and, for every larger count in ``spec["workers"]``, (c), (a) bundles and (c) with that many
    trainers side by side. (a) bundles is compared with the (c) runs right before and after it (a shared
    machine's speed drifts by 10% and more between the first and the last (c)); the other modes with the
    first and last."""
    from ddl_commodity.data.redshift import load_redshift_h5, write_redshift_h5

    h5 = write_redshift_h5(work / "spectra.h5", spec["samples"], spec["seed"], progress=False)
    data = load_redshift_h5(h5)
    x, y = data.spectra, data.label
    modes: dict[str, dict] = {}
    print("  (c) in-memory Keras loop ...", flush=True)
    modes["c_in_memory"] = in_memory(spec, x, y)
    print("  (b) TensorFlow input (tf.data over HDF5) ...", flush=True)
    modes["b_tensorflow_input"] = tensorflow_input(spec, h5)
    print("  (a) TFoS Spark input: cluster, per-sample records, (c), bundles, (c) ...", flush=True)
    spark, timings = spark_input(spec, x, y, work, alone=lambda: in_memory(spec, x, y))
    modes["a_spark_records"] = spark["records"]
    modes["c_before_bundles"], modes["a_spark_bundles"] = spark["alone_before"], spark["bundles"]
    modes["c_after_bundles"] = spark["alone_after"]
    print("  (c) in-memory Keras loop, again ...", flush=True)
    modes["c_in_memory_repeat"] = in_memory(spec, x, y)
    for m in (w for w in spec["workers"] if w > 1):
        print(f"  {m} workers side by side: (c), (a) Spark input bundles, (c) ...", flush=True)
        fed = spark_input(spec, x, y, work, m, alone=lambda m=m: in_memory_side_by_side(spec, h5, m))[0]
        modes[f"c_before_bundles_{m}w"], modes[f"a_spark_bundles_{m}w"] = fed["alone_before"], fed["bundles"]
        modes[f"c_after_bundles_{m}w"] = fed["alone_after"]
    for m in modes.values():
        for key in ("first", "end", "pid"):
            m.pop(key, None)
    upper = (modes["c_in_memory"]["samples_per_s"] + modes["c_in_memory_repeat"]["samples_per_s"]) / 2
    beside = {str(w): (modes[f"c_before_bundles{_w(w)}"]["samples_per_s"]
                       + modes[f"c_after_bundles{_w(w)}"]["samples_per_s"]) / 2 for w in spec["workers"]}
    by_workers = {str(w): modes[f"a_spark_bundles{_w(w)}"]["samples_per_s"] / beside[str(w)] for w in spec["workers"]}
    ratios = {
        "a_records_over_c": modes["a_spark_records"]["samples_per_s"] / upper,
        "a_bundles_over_c": by_workers["1"],
        "a_bundles_over_outer_c": modes["a_spark_bundles"]["samples_per_s"] / upper,
        "b_over_c": modes["b_tensorflow_input"]["samples_per_s"] / upper,
        "a_bundles_over_a_records": modes["a_spark_bundles"]["samples_per_s"]
        / modes["a_spark_records"]["samples_per_s"],
        "c_repeat_over_c": modes["c_in_memory_repeat"]["samples_per_s"] / modes["c_in_memory"]["samples_per_s"],
    }
    return {"modes": modes, "c_samples_per_s": upper, "c_beside_bundles_samples_per_s": beside, "ratios": ratios,
            "ratio_spark_bundles_to_in_memory": by_workers["1"],
            "ratio_spark_bundles_to_in_memory_by_workers": by_workers, "spark_overheads": timings}


def _w(workers: int) -> str:
    """The key suffix of a mode with several trainers side by side."""
    return "" if workers == 1 else f"_{workers}w"


LABELS = {
    "c_in_memory": "(c) in-memory Keras loop",
    "b_tensorflow_input": "(b) TensorFlow input, tf.data + HDF5",
    "a_spark_records": "(a) TFoS Spark input, 1 sample/record",
    "c_before_bundles": "(c) in-memory, right before (a) bundles",
    "a_spark_bundles": "(a) TFoS Spark input, bundles (ours)",
    "c_after_bundles": "(c) in-memory, right after (a) bundles",
    "c_in_memory_repeat": "(c) in-memory Keras loop, again",
}


def _split(key: str) -> tuple[str, str | None]:
    """``"a_spark_bundles_3w"`` -> (``"a_spark_bundles"``, ``"3"``); a one-worker key -> (key, None)."""
    base, _, suffix = key.rpartition("_")
    return (base, suffix[:-1]) if suffix.endswith("w") and suffix[:-1].isdigit() else (key, None)


def _label(key: str) -> str:
    base, workers = _split(key)
    return f"{LABELS[base]}, {workers} workers side by side" if workers else LABELS[key]


def summary_table(result: dict) -> str:
    """Every mode; its ratio to (c): (a) bundles to the (c) runs beside it, the rest to the first and last."""
    modes, beside = result["modes"], result["c_beside_bundles_samples_per_s"]

    def upper(key: str) -> float:
        workers = _split(key)[1]
        if workers:
            return beside[workers]
        return beside["1"] if key == "a_spark_bundles" else result["c_samples_per_s"]

    rows = [(_label(k), m["samples"], m["samples_per_s"], f"{m['samples_per_s'] / upper(k):.3f}", m["seconds"],
             m["wait_seconds"], m["end_to_end_seconds"]) for k, m in modes.items()]
    return table(["mode", "samples", "samples/s", "ratio to (c)", "seconds", "waiting for data s",
                  "end-to-end s"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, help="spectra in the data set (default 512 quick, 4096 full)")
    parser.add_argument("--epochs", type=int, help="passes over them (default 1 quick, 6 full)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--filters", type=int, nargs=2, default=(2, 2), metavar=("F1", "F2"),
                        help="conv filter counts (default 2 2: a 2.9M-weight model; the experiment uses 8 8)")
    parser.add_argument("--bundle-batches", type=int, default=4, help="mini-batches per bundle (as the experiment)")
    parser.add_argument("--workers", type=int, nargs="+", metavar="M",
                        help="worker counts (default 1 quick, 1 3 full); above 1, that many trainers side by side")
    args = parser.parse_args(argv)
    samples = args.samples or (512 if args.quick else 4096)
    if samples % args.batch_size:
        parser.error("--samples must be a multiple of --batch-size (every step then has a full batch)")
    spec = {"samples": samples, "epochs": args.epochs or (1 if args.quick else 6), "batch_size": args.batch_size,
            "filters": list(args.filters), "kernel_size": 8, "dropout": 0.2, "learning_rate": 1e-3, "seed": 7,
            "bundle_batches": args.bundle_batches,
            "workers": sorted(set(args.workers or ((1,) if args.quick else (1, 3))))}
    if spec["workers"][0] != 1:
        parser.error("--workers must include 1 (the one-worker modes are always measured)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from ddl_commodity.models.redshift_cnn import parameter_count

    env = environment()
    print(f"feeding benchmark ({'quick' if args.quick else 'full'} mode): {spec['samples']} spectra x "
          f"{spec['epochs']} epochs, batch {spec['batch_size']}, filters {spec['filters']}, "
          f"{env['cpu_count']} CPUs", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ddl-bench-feeding-") as tmp:
        result = run(spec, Path(tmp))
    spec["parameters"] = parameter_count(tuple(spec["filters"]))
    env["load_average_1m_end"] = os.getloadavg()[0]
    document = {"benchmark": NAME, "mode": "quick" if args.quick else "full", "environment": env,
                "settings": spec, **result, "seconds": time.monotonic() - started}
    write_json(Path(args.out), document)
    print(summary_table(result))
    r = result["ratios"]
    print(f"ratios to (c): (a) records {r['a_records_over_c']:.3f}, (a) bundles {r['a_bundles_over_c']:.3f}, "
          f"(b) {r['b_over_c']:.3f}; bundles / records = {r['a_bundles_over_a_records']:.2f}")
    by = ", ".join(f"{m} {v:.3f}" for m, v in result["ratio_spark_bundles_to_in_memory_by_workers"].items())
    print(f"(a) bundles / (c) with as many trainers, by workers: {by}")
    print(f"wrote {args.out} ({document['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
