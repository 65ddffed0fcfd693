"""Benchmark 8: data larger than one machine: does anything grow with the data set but the time it takes?

A namespace cluster (``LocalStandaloneCluster(netns=True)``: master + 4 one-core Spark workers, each node in
its own network namespace and control group, CPU share ``--node-cpus`` and memory cap ``--node-memory``)
trains the redshift CNN (small filters: the data path is measured, not the model) for one epoch, ``disjoint``,
1 PS + 3 workers, on three Parquet data sets of simulated spectra spanning 16x, the largest larger than the
sum of the Spark workers' memory caps. The data sets are written once under ``data/data-scale/`` (the
smaller ones are hard links to the first files of the largest) and reused. Each run is ``ddl cluster
submit`` (the driver on node0, in its namespace and group) with ``data.source`` pointing at the data set; the
validation set is the same 4096 rows at every size (8 row groups of 512) so that it does not grow with the data.

* ``driver_peak_rss_mb`` per size: the largest resident set of the driver (the ``ddl cluster submit``
  process and its driver JVM, summed), sampled every 0.2 s.
* ``node_peak_memory_mb`` per size: the largest memory of a Spark worker node (PS or TF worker) over the
  run, sampled from its control group: what its processes hold, resident anonymous memory plus shared memory
  (``memory.stat``; each one's peak, summed). The page cache of the Parquet files a node has read is left out:
  it fills the group up to its cap and the kernel drops it under pressure. The working set as cAdvisor counts
  it (usage less inactive file pages, so the recently read files' active cache is in) is in the JSON as
  ``node_peak_working_set_mb``, and every part per node beside it.
* ``worker_rx_bytes_over_shard_bytes``: at the largest size that trained, the most any TF worker's node received
  on its interface over the whole run (one epoch, start-up included) over the bytes of its shard's rows (float32
  spectrum + int32 label, 7204 bytes a row). The data sets lie on the machine's disk, which every node reads
  as a shared local disk: their rows do not cross the interface at all. A control run of 16,384 rows (the
  data sets' first rows) loaded by the driver (``data.path``: the in-memory path, shipped to every executor)
  shows what the counters see when the data do travel.
* ``samples_per_s_over_in_memory``: benchmark 1's measure. One TFoS worker (one 1-core Spark worker,
  uncapped, loopback) trains on bundles streamed from Parquet row groups
  (:func:`~ddl_commodity.data.streaming.piece_feed_rdd`), against the plain in-memory Keras loop (c) run
  right before and right after it; then on bundles from rows in memory (``epoch_feed_rdd``, the in-memory
  path) against the (c) runs around it. samples/s counts from the first batch in hand.
* ``predict_samples_per_s_over_single``: ``ddl predict`` of the largest data set with the largest run's model
  on the cluster's 4 executors (run inside node0, as a user on the master would) against one process scoring
  the same row groups the same way (read, ``model.predict``, write Parquet) in a control group with the
  executors' total CPU share; measured single, ``ddl predict``, single. Rows over each one's whole wall time
  (start-up, model loads included); the steady rate (first pieces left out) beside it.

Resumable: each stage's result is kept in the JSON as it finishes, and the runs (the scoring needs the largest
one's model) under ``data/data-scale/work-<mode>/``; a re-run with the same ``--out`` skips what is done
(``--fresh`` measures everything again).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import yaml

from benchmarks._common import base_parser, environment, table, write_json

NAME = "data_scale"
REPO = Path(__file__).resolve().parents[1]
ROW_BYTES = 1800 * 4 + 4  # a spectrum (float32) and its label (int32)
WORKERS = 3  # TF workers; the cluster has one Spark worker more, for the PS
GOALS = {
    "driver_peak_rss_mb": "largest size within 10% of the smallest",
    "node_peak_memory_mb": "flat within 10% across sizes, and under the node's cap",
    "worker_rx_bytes_over_shard_bytes": "<= 1.10",
    "samples_per_s_over_in_memory": ">= 0.9",
    "predict_samples_per_s_over_single": ">= 0.8",
}
FULL = {"sizes": [65536, 262144, 1048576], "rows_per_file": 8192, "node_cpus": 0.4, "node_memory": "1.5g",
        "master_memory": "2g", "link": "400mbit", "filters": [2, 2], "batch_size": 64, "feed_rows": 16384,
        "feed_epochs": 3, "validation_rows": 4096}
QUICK = {"sizes": [2048, 8192, 32768], "rows_per_file": 2048, "node_cpus": 0.4, "node_memory": "1.5g",
         "master_memory": "2g", "link": "400mbit", "filters": [2, 2], "batch_size": 64, "feed_rows": 2048,
         "feed_epochs": 1, "validation_rows": 512}
SEED = 7


def _ddl(*args: str, cwd: Path = REPO, timeout: float = 3600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "ddl_commodity.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ddl {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


# ---------------------------------------------------------------------------------------------------------
# The data sets


def data_sets(data_dir: Path, sizes: list[int], rows_per_file: int) -> dict[int, dict]:
    """The Parquet data sets of ``sizes`` rows: the largest simulated once, the others hard links to its first
    files; each made in a temporary directory and renamed, so a crash leaves none half-made."""
    from ddl_commodity.data.parquet import pieces

    largest = data_dir / f"redshift-{max(sizes)}-r{rows_per_file}"
    if not largest.is_dir():
        print(f"  simulating {max(sizes):,} spectra into {largest} (once) ...", flush=True)
        _ddl("data", "redshift", "--samples", str(max(sizes)), "--seed", str(SEED), "--format", "parquet",
             "--rows-per-file", str(rows_per_file), "--out", str(largest), timeout=7200)
    files = sorted(largest.glob("part-*.parquet"))
    out = {}
    for n in sizes:
        path = largest if n == max(sizes) else data_dir / f"redshift-{n}-r{rows_per_file}"
        if not path.is_dir():
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=data_dir))
            for f in files[:n // rows_per_file]:
                os.link(f, tmp / f.name)
            tmp.chmod(0o755)
            tmp.rename(path)
        found = pieces(str(path))
        if sum(p.rows for p in found) != n:
            raise RuntimeError(f"{path}: holds {sum(p.rows for p in found)} rows, not {n}; remove it and re-run")
        out[n] = {"path": str(path), "rows": n, "row_groups": len(found), "files": len(list(path.glob("*.parquet"))),
                  "spectra_bytes": n * 1800 * 4,
                  "parquet_bytes": sum(f.stat().st_size for f in path.glob("*.parquet"))}
    return out


# ---------------------------------------------------------------------------------------------------------
# Sampling a run: the driver's process tree, every node's group


def _memory_stat(group) -> dict[str, int]:
    """The node group's memory: usage, and from ``memory.stat`` resident, shared memory, page cache, inactive
    file pages (cgroup v1 ``total_*`` or v2 names)."""
    d = Path(group.dirs.get("memory") or group.dirs["unified"])
    stat = {}
    for line in (d / "memory.stat").read_text().splitlines():
        k, _, v = line.partition(" ")
        stat[k] = int(v)
    if group.version == 1:
        usage = int((d / "memory.usage_in_bytes").read_text())
        rss, shmem, cache, inactive = (stat.get(f"total_{k}", 0) for k in ("rss", "shmem", "cache", "inactive_file"))
    else:
        usage = int((d / "memory.current").read_text())
        rss, shmem, cache, inactive = (stat.get(k, 0) for k in ("anon", "shmem", "file", "inactive_file"))
    return {"usage": usage, "working_set": usage - inactive, "rss": rss, "shmem": shmem, "cache": cache}


class Sampler:
    """Peak memory of a process tree and of every node group, sampled every ``interval_s`` in a thread."""

    def __init__(self, groups: dict, interval_s: float = 0.2) -> None:
        self.groups, self.interval_s = groups, interval_s
        self.pid: int | None = None
        self.driver_peak = 0
        self.driver_parts = {"python": 0, "children": 0}  # the submitting process; its driver JVM
        self.nodes: dict[str, dict[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Sampler:
        for g in self.groups.values():  # the kernel's own peak, from now on (cgroup v1)
            path = Path(g.dirs.get("memory", "")) / "memory.max_usage_in_bytes"
            if g.version == 1 and path.exists():
                path.write_text("0")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for name, g in self.groups.items():
            path = Path(g.dirs.get("memory", "")) / "memory.max_usage_in_bytes"
            if g.version == 1 and path.exists():
                self.nodes.setdefault(name, {})["kernel_max_usage"] = int(path.read_text())

    def _loop(self) -> None:
        import psutil

        while not self._stop.wait(self.interval_s):
            if self.pid is not None:
                try:
                    root = psutil.Process(self.pid)
                    own = root.memory_info().rss
                    children = sum(p.memory_info().rss for p in root.children(recursive=True))
                    self.driver_peak = max(self.driver_peak, own + children)
                    self.driver_parts = {"python": max(self.driver_parts["python"], own),
                                         "children": max(self.driver_parts["children"], children)}
                except psutil.Error:
                    pass
            for name, g in self.groups.items():
                try:
                    now = _memory_stat(g)
                except (OSError, ValueError, KeyError):
                    continue
                peak = self.nodes.setdefault(name, {})
                for k, v in now.items():
                    peak[k] = max(peak.get(k, 0), v)


def _mb(b: float) -> float:
    return round(b / 2**20, 1)


# ---------------------------------------------------------------------------------------------------------
# One data-parallel run per size


def run_config(name: str, data: dict, spec: dict, runs_dir: Path, source: bool = True) -> dict:
    data_section = ({"source": data["path"]} if source else {"path": data["h5"]})
    return {
        "experiment": "redshift", "name": name, "seed": SEED,
        "data": {**data_section, "validation_fraction": spec["validation_rows"] / data["rows"]},
        "model": {"filters": spec["filters"], "kernel_size": 8, "dropout": 0.1},
        "training": {"mode": "data_parallel", "workers": WORKERS, "epochs": 1, "batch_size": spec["batch_size"],
                     "learning_rate": 0.001, "data_distribution": "disjoint", "baseline": False},
        "ps": {"s": WORKERS, "staleness": "inverse"},
        "cluster": {"executor_memory": "512m"},
        "output": {"runs_dir": str(runs_dir)},
    }


def measure_run(cfg: dict, cluster, work: Path) -> dict:
    """``ddl cluster submit`` of ``cfg`` with the driver's and the nodes' memory sampled; its traffic."""
    path = work / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run_dir = Path(cfg["output"]["runs_dir"]) / cfg["name"]
    shutil.rmtree(run_dir, ignore_errors=True)
    groups = cluster.state.groups()
    kills = {name: g.usage().oom_kills for name, g in groups.items()}
    started = time.monotonic()
    with Sampler(groups) as sampler:
        proc = subprocess.Popen([sys.executable, "-m", "ddl_commodity.cli", "cluster", "submit", str(path),
                                 "--run-id", cfg["name"], "--state-dir", str(cluster.state_dir)],
                                cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sampler.pid = proc.pid
        output, _ = proc.communicate(timeout=7200)
    killed = {name: n for name, g in groups.items() if (n := g.usage().oom_kills - kills[name])}
    if proc.returncode != 0 and not killed:
        raise RuntimeError(f"run {cfg['name']} failed:\n{output[-3000:]}")
    if killed:  # a node reached its cap: that is the measurement (its peak is the cap)
        error = next((line for line in output.splitlines() if line.startswith("error:")), output[-500:])
        return {"failed": "out of memory", "oom_kills": killed, "error": error,
                **_memory_result(sampler, cluster), "run_seconds": round(time.monotonic() - started, 1)}
    return _run_result(run_dir, sampler, cluster, time.monotonic() - started)


def _memory_result(sampler: Sampler, cluster) -> dict:
    """The driver's and every node's peak memory (and cap) as sampled."""
    caps = {n["name"]: n.get("memory") for n in cluster.state.nodes}
    nodes = {name: {"cap_mb": _mb(caps[name]) if caps.get(name) else None,
                    **{f"peak_{k}_mb": _mb(v) for k, v in peak.items()}} for name, peak in sampler.nodes.items()}
    return {"driver_peak_rss_mb": _mb(sampler.driver_peak),
            "driver_peak_rss_mb_by_part": {"python": _mb(sampler.driver_parts["python"]),
                                           "jvm": _mb(sampler.driver_parts["children"])},
            "node_peak_memory_mb": node_peak(nodes), "nodes": nodes}


def node_peak(nodes: dict, key: str = "held") -> float:
    """The largest worker node's peak memory. ``held``: what its processes hold and the kernel cannot drop
    (resident anonymous memory plus shared memory; their peaks summed, so at most a little high); the page
    cache the Parquet reads leave behind is not in it. ``working_set``: the group's usage less its inactive
    file pages, which still counts the recently read files' active cache."""
    def value(v: dict) -> float:
        return v["peak_rss_mb"] + v["peak_shmem_mb"] if key == "held" else v["peak_working_set_mb"]
    return round(max(value(v) for name, v in nodes.items() if name != "node0"), 1)


def _run_result(run_dir: Path, sampler: Sampler, cluster, seconds: float) -> dict:
    traffic = json.loads((run_dir / "nodes" / "traffic.json").read_text())["nodes"]
    records = {f.stem: [json.loads(line) for line in f.read_text().splitlines()]
               for f in sorted((run_dir / "workers").glob("worker-*.jsonl"))}
    summary = json.loads((run_dir / "summary.json").read_text())
    memory = _memory_result(sampler, cluster)
    nodes = {}
    for name, peaks in memory["nodes"].items():
        t = traffic.get(name, {})
        nodes[name] = {"roles": t.get("roles", []), "rx_bytes": t.get("rx_bytes"), "tx_bytes": t.get("tx_bytes"),
                       **peaks}
    workers = {}
    for name, recs in records.items():
        node = next(n for n, v in nodes.items() if name in v["roles"])
        rows = recs[0]["samples"]
        workers[name] = {"node": node, "shard_rows": rows, "shard_bytes": rows * ROW_BYTES,
                         "rx_bytes": nodes[node]["rx_bytes"],
                         "rx_over_shard": round(nodes[node]["rx_bytes"] / (rows * ROW_BYTES), 4),
                         "epoch_seconds": round(recs[0]["seconds"], 1), "train_seconds": recs[0]["train_seconds"]}
    return {"run_seconds": round(seconds, 1), **memory, "nodes": nodes,
            "worker_rx_bytes_over_shard_bytes": max(w["rx_over_shard"] for w in workers.values()),
            "train_samples": summary.get("train_samples"), "validation_samples": summary.get("validation_samples"),
            "final_val_accuracy": summary.get("final", {}).get("val_accuracy"),
            "distribution_confirmed": (summary.get("data_distribution_check") or {}).get("consistent"),
            "workers": workers}


# ---------------------------------------------------------------------------------------------------------
# Scoring: ddl predict on the cluster against one process on the same CPU


def score_alone(run_dir: str, source: str, out: str, result: str) -> None:
    """One process scores every row group of ``source`` as an executor does (read, predict, write Parquet);
    its timings into ``result``. Run in a control group with the executors' total CPU share."""
    t0 = time.monotonic()
    import keras
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ddl_commodity.data.parquet import ROW, pieces
    from ddl_commodity.data.streaming import piece_rows
    from ddl_commodity.experiments.registry import load

    experiment, cfg = load(Path(run_dir) / "config.yaml")
    inputs, _ = experiment.columns(cfg)
    model = keras.saving.load_model(Path(run_dir) / "model.keras", compile=False)
    found = pieces(source, inputs)
    Path(out).mkdir(parents=True)
    loaded = time.monotonic()
    rows, first_done = 0, None
    for piece in found:
        index, x, _ = piece_rows(piece, inputs, None)
        outputs = model.predict(x, batch_size=256, verbose=0)
        pq.write_table(pa.table({ROW: index, **experiment.predictions(outputs)}),
                       Path(out) / f"part-{piece.first_row:012d}.parquet")
        rows += len(index)
        if first_done is None:
            first_done, first_rows = time.monotonic(), rows
    end = time.monotonic()
    Path(result).write_text(json.dumps({
        "rows": rows, "seconds": end - t0, "samples_per_s": rows / (end - t0),
        "start_seconds": loaded - t0, "steady_samples_per_s": (rows - first_rows) / (end - first_done)}))


def single_scoring(run_dir: Path, source: str, cpus: float, work: Path, tag: str) -> dict:
    """:func:`score_alone` in a control group of ``cpus`` cores (TensorFlow's pools sized to them)."""
    from ddl_commodity.resources.cgroups import NodeLimits, create_node_groups, enter_command, remove_groups

    out, result = work / f"single-{tag}", work / f"single-{tag}.json"
    shutil.rmtree(out, ignore_errors=True)
    (group,) = create_node_groups(uuid.uuid4().hex[:12], {"single": NodeLimits(cpus=cpus)})
    threads = str(max(1, int(np.ceil(cpus))))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_NUM_INTRAOP_THREADS=threads, TF_NUM_INTEROP_THREADS=threads,
               OMP_NUM_THREADS=threads)
    code = (f"from benchmarks.data_scale import score_alone; score_alone({str(run_dir)!r}, {source!r}, "
            f"{str(out)!r}, {str(result)!r})")
    try:
        proc = subprocess.run(enter_command(group, [sys.executable, "-c", code]), cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=7200, check=False)
    finally:
        remove_groups([group])
    if proc.returncode != 0:
        raise RuntimeError(f"single-process scoring failed:\n{proc.stderr[-3000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return {**json.loads(result.read_text()), "cpus": cpus}


def cluster_scoring(run_dir: Path, source: str, cluster, work: Path, tag: str) -> dict:
    """``ddl predict`` inside node0 (its namespace and group) on the cluster's executors."""
    from ddl_commodity.cluster.netns import node_command
    from ddl_commodity.resources.cgroups import enter_command

    node0 = cluster.state.nodes[0]
    out = work / f"predict-{tag}"
    shutil.rmtree(out, ignore_errors=True)
    argv = [sys.executable, "-m", "ddl_commodity.cli", "predict", str(run_dir), "--data", source, "--out", str(out),
            "--master", cluster.master_url]
    env = dict(os.environ, SPARK_LOCAL_IP=node0["address"], TF_CPP_MIN_LOG_LEVEL="2")
    t0 = time.monotonic()
    proc = subprocess.run(enter_command(cluster.state.groups().get("node0"), node_command(node0["namespace"], argv)),
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=7200, check=False)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"ddl predict failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    import pyarrow.parquet as pq

    parts = sorted(out.glob("part-*.parquet"), key=lambda f: f.stat().st_mtime)
    rows = [pq.ParquetFile(f).metadata.num_rows for f in parts]
    executors = cluster.state.workers
    # The steady rate: the first part file of each executor carries its model load; leave them out.
    # None where there are too few files, or they were written within the file system's time resolution.
    span = parts[-1].stat().st_mtime - parts[executors - 1].stat().st_mtime if len(parts) > executors else 0.0
    steady = sum(rows[executors:]) / span if span > 0 else None
    shutil.rmtree(out, ignore_errors=True)
    return {"rows": sum(rows), "files": len(parts), "seconds": seconds, "samples_per_s": sum(rows) / seconds,
            "steady_samples_per_s": steady, "executors": executors,
            "cpus": executors * cluster.state.nodes[1]["cpus"]}


# ---------------------------------------------------------------------------------------------------------
# Feeding from Parquet vs in memory (benchmark 1's measure)


def feeding(data: dict, spec: dict, work: Path) -> dict:
    """(c), (a) from Parquet, (c), (a) from rows in memory, (c): one TFoS worker, bundles, shared memory."""
    from benchmarks.feeding import in_memory
    from ddl_commodity.data.parquet import Column, pieces
    from ddl_commodity.data.streaming import piece_rows

    inputs, label = (Column("spectrum", (1800,), "float32"),), Column("label", (), "int32")
    found = []
    for p in pieces(data["path"], [*inputs, label]):
        if sum(q.rows for q in found) >= spec["feed_rows"]:
            break
        found.append(p)
    parts = [piece_rows(p, inputs, label) for p in found]
    x, y = np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]).astype(np.int32)
    fspec = {"samples": len(y), "epochs": spec["feed_epochs"], "batch_size": spec["batch_size"],
             "filters": spec["filters"], "kernel_size": 8, "dropout": 0.2, "learning_rate": 1e-3, "seed": SEED,
             "bundle_batches": 4}
    modes: dict[str, dict] = {}
    run = lambda: in_memory(fspec, x, y)  # noqa: E731
    _spark_feeds(fspec, found, inputs, label, x, y, work, run, modes)
    for m in modes.values():
        for key in ("first", "end", "pid"):
            m.pop(key, None)
    parquet = modes["a_parquet"]["samples_per_s"] / np.mean([modes["c_1"]["samples_per_s"],
                                                              modes["c_2"]["samples_per_s"]])
    memory = modes["a_in_memory_rdd"]["samples_per_s"] / np.mean([modes["c_2"]["samples_per_s"],
                                                                    modes["c_3"]["samples_per_s"]])
    return {"settings": fspec, "modes": modes, "parquet_over_c": round(float(parquet), 4),
            "in_memory_rdd_over_c": round(float(memory), 4)}


def _spark_feeds(fspec: dict, found: list, inputs: tuple, label, x: np.ndarray, y: np.ndarray, work: Path,
                 alone, modes: dict) -> None:
    from pyspark import SparkContext, cloudpickle
    from tensorflowonspark import TFCluster

    import benchmarks
    from benchmarks.feeding import benchmark_conf, spark_worker
    from ddl_commodity.cluster.local import LocalStandaloneCluster
    from ddl_commodity.data.rdd import epoch_feed_rdd, indexed_chunks, shard_assignment
    from ddl_commodity.data.streaming import piece_feed_rdd, piece_shards
    from ddl_commodity.runtime.feed import end_feed

    cloudpickle.register_pickle_by_value(benchmarks)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    n, epochs, bundle = len(y), fspec["epochs"], fspec["batch_size"] * fspec["bundle_batches"]
    result_dir = work / "feed-results"
    shutil.rmtree(result_dir, ignore_errors=True)
    result_dir.mkdir(parents=True)
    phases = [{"name": name, "style": "bundles", "samples": n * epochs} for name in ("parquet", "memory")]
    with LocalStandaloneCluster(workers=1, cores=1, memory="2g", state_dir=work / "feed-cluster",
                                startup_timeout_s=120.0, worker_timeout_s=60.0) as spark_cluster:
        sc = SparkContext(conf=benchmark_conf(spark_cluster.master_url, "ddl-benchmark-data-scale", 1))
        sc.setLogLevel("ERROR")
        cluster = None
        try:
            parquet = piece_feed_rdd(sc, found, piece_shards(found, [], 1, SEED), 1, epochs, "same", bundle, SEED,
                                     inputs, label)
            chunks = indexed_chunks(sc, x, y, max(1, int(x.nbytes // (8 * 2**20)) + 1), work).cache()
            chunks.count()  # materialised before the clock: the in-memory path caches its rows too
            memory = epoch_feed_rdd(sc, chunks, shard_assignment(n, np.arange(n), 1, SEED), 1, epochs, "same",
                                    bundle, SEED)
            cluster = TFCluster.run(sc, spark_worker, {"spec": fspec, "phases": phases, "result_dir": str(result_dir)},
                                    1, num_ps=0, input_mode=TFCluster.InputMode.SPARK, reservation_timeout=180,
                                    release_port=True)
            modes["c_1"] = alone()
            modes["a_parquet"] = _feed(sc, "parquet", parquet, cluster, result_dir)
            modes["c_2"] = alone()
            modes["a_in_memory_rdd"] = _feed(sc, "memory", memory, cluster, result_dir)
            modes["c_3"] = alone()
            sc.parallelize(range(1), 1).foreachPartition(end_feed(cluster.cluster_info, cluster.queues))
            cluster.server.stop()
            cluster = None
        finally:
            if cluster is not None:
                sc.cancelAllJobs()
            sc.stop()


def _feed(sc, phase: str, rdd, cluster, result_dir: Path) -> dict:
    """Feed one phase through shared memory, as a run feeds, once the worker has warmed its model."""
    from benchmarks.feeding import RESULT_WAIT_S, _wait_for
    from ddl_commodity.runtime.feed import SHARED_MEMORY, feed_partition

    _wait_for(result_dir / f"ready-{phase}-0.json", RESULT_WAIT_S)
    shared_root = SHARED_MEMORY / f"ddl-feed-benchmark-{os.getpid()}"
    started = time.monotonic()
    try:
        rdd.foreachPartition(feed_partition(cluster.cluster_info, RESULT_WAIT_S, shared_root=str(shared_root)))
    finally:
        shutil.rmtree(shared_root, ignore_errors=True)
    r = _wait_for(result_dir / f"{phase}-0.json", RESULT_WAIT_S)
    r["feed_job_seconds"] = time.monotonic() - started
    return r


# ---------------------------------------------------------------------------------------------------------
# The whole benchmark


class Progress:
    """Stage lines with the time so far and an ETA: the rows still to train or score at the rate of those done
    (in this process: a resumed benchmark's earlier stages do not count)."""

    def __init__(self, total_rows: float) -> None:
        self.total, self.done, self.t0 = total_rows, 0.0, time.monotonic()
        self.rows, self.seconds, self.stage = 0.0, 0.0, self.t0

    def start(self, what: str) -> None:
        now = time.monotonic()
        self.stage = now
        eta = f", ETA {self.seconds / self.rows * (self.total - self.done) / 60:.0f} min" if self.rows else ""
        print(f"[{(now - self.t0) / 60:5.1f} min{eta}] {what} ...", flush=True)

    def finished(self, rows: float, measured: bool = True) -> None:
        """``rows`` trained or scored since the last :meth:`start` (``measured`` False: done before)."""
        self.done += rows
        if measured:
            self.rows, self.seconds = self.rows + rows, self.seconds + time.monotonic() - self.stage


def cluster_stages(doc: dict, out: Path, sets: dict[int, dict], spec: dict, work: Path, progress: Progress,
                   model: Path | None = None) -> None:
    """Every run and the scoring that are not in ``doc`` yet, on one namespace cluster."""
    from ddl_commodity.cluster.local import LocalStandaloneCluster
    from ddl_commodity.resources.cgroups import NodeLimits, parse_size

    sizes = sorted(sets)
    todo = [n for n in sizes if str(n) not in doc["runs"]]
    progress.finished(sum(n for n in sizes if n not in todo) + (3 * max(sizes) if "predict" in doc else 0)
                      + (min(sizes) if "control_in_memory" in doc else 0), measured=False)
    if not todo and "predict" in doc and "control_in_memory" in doc:
        return
    _wait_for_the_subnet()
    limits = NodeLimits(cpus=spec["node_cpus"], memory=parse_size(spec["node_memory"]))
    master = NodeLimits(cpus=spec["node_cpus"], memory=parse_size(spec["master_memory"]))
    progress.start(f"namespace cluster: master + {WORKERS + 1} Spark workers, each {spec['node_cpus']} core, "
                   f"{spec['node_memory']} (master {spec['master_memory']}), links {spec['link']}")
    with LocalStandaloneCluster(workers=WORKERS + 1, netns=True, bandwidth=spec["link"], limits=limits,
                                master_limits=master, state_dir=work / "cluster", worker_timeout_s=60.0) as cluster:
        runs_dir = work / "runs"
        for n in todo:
            progress.start(f"run: {n:,} rows ({sets[n]['spectra_bytes'] / 2**30:.2f} GiB of spectra), 1 epoch, "
                           f"{WORKERS} workers, disjoint")
            doc["runs"][str(n)] = r = measure_run(run_config(f"scale-{n}", sets[n], spec, runs_dir), cluster, work)
            print(f"    driver {r['driver_peak_rss_mb']:.0f} MB, node peak {r['node_peak_memory_mb']:.0f} MB, "
                  + (f"FAILED: {r['error']}" if "failed" in r else
                     f"worker rx / shard {r['worker_rx_bytes_over_shard_bytes']:.3f}") + f", {r['run_seconds']:.0f} s",
                  flush=True)
            write_json(out, doc)
            progress.finished(n)
        if "predict" not in doc:
            largest = max(n for n in sizes if "failed" not in doc["runs"][str(n)])  # the largest that trained
            run_dir = model or runs_dir / f"scale-{largest}"
            if not (run_dir / "model.keras").is_file():
                raise RuntimeError(f"{run_dir}: no model.keras; give a finished run with --predict-model")
            cpus = cluster.state.workers * spec["node_cpus"]
            # The largest set: the cluster's start-up (a Spark job, TensorFlow imported and the model loaded on
            # 0.4-core executors) is a fixed cost that only a data set of this size amortises, as a user's would.
            scored = max(sizes)
            source = sets[scored]["path"]
            progress.start(f"scoring {scored:,} rows: one process on {cpus:g} cores, ddl predict, one process")
            before = single_scoring(run_dir, source, cpus, work, "before")
            on_cluster = cluster_scoring(run_dir, source, cluster, work, "cluster")
            after = single_scoring(run_dir, source, cpus, work, "after")
            single = np.mean([before["samples_per_s"], after["samples_per_s"]])
            steady = np.mean([before["steady_samples_per_s"], after["steady_samples_per_s"]])
            doc["predict"] = {"rows": scored, "model": str(run_dir), "single_before": before,
                              "ddl_predict": on_cluster, "single_after": after,
                              "ratio": round(float(on_cluster["samples_per_s"] / single), 4),
                              "steady_ratio": None if on_cluster["steady_samples_per_s"] is None
                              else round(float(on_cluster["steady_samples_per_s"] / steady), 4)}
            print(f"    ddl predict / single: {doc['predict']['ratio']:.3f} (steady "
                  f"{doc['predict']['steady_ratio']})", flush=True)
            write_json(out, doc)
            progress.finished(3 * scored)
        if "control_in_memory" not in doc:
            # Not a whole size: the driver's file reaches 4 executors through node0's link, and a 472 MB one
            # takes longer than Spark's 30 s network timeout there.
            n = spec["feed_rows"]
            h5 = work / f"redshift-{n}.h5"
            if not h5.is_file():
                _ddl("data", "redshift", "--samples", str(n), "--seed", str(SEED), "--out", str(h5))
            progress.start(f"control: {n:,} rows loaded by the driver (the in-memory path)")
            cfg = run_config(f"control-{n}", {"rows": n, "h5": str(h5)}, spec, runs_dir, source=False)
            r = measure_run(cfg, cluster, work)
            doc["control_in_memory"] = {"rows": n, **r}
            print(f"    driver {r['driver_peak_rss_mb']:.0f} MB, node peak {r['node_peak_memory_mb']:.0f} MB, "
                  f"worker rx / shard {r['worker_rx_bytes_over_shard_bytes']:.3f}", flush=True)
            write_json(out, doc)
            progress.finished(n)


def _wait_for_the_subnet(timeout_s: float = 3600.0) -> None:
    """Namespace clusters share one bridge subnet: on a shared machine, wait for another one to end."""
    from ddl_commodity.cluster.local import tagged_processes
    from ddl_commodity.cluster.netns import leftover_cluster_ids

    deadline = time.monotonic() + timeout_s
    while busy := [sid for sid in leftover_cluster_ids() if tagged_processes(sid, prefix=True)]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"namespace cluster {busy[0]} is still running after {timeout_s:.0f} s")
        print(f"    waiting for namespace cluster {busy[0]} (another run's) to end ...", flush=True)
        time.sleep(30)


def headline(doc: dict, sizes: list[int]) -> dict:
    """The five figures, their goals and whether each is met."""
    runs = {str(n): doc["runs"][str(n)] for n in sizes}
    driver = {n: r["driver_peak_rss_mb"] for n, r in runs.items()}
    node = {n: node_peak(r["nodes"]) for n, r in runs.items()}
    cap = min(v["cap_mb"] for r in runs.values() for name, v in r["nodes"].items() if name != "node0")
    small, large = str(min(sizes)), str(max(sizes))
    trained = str(max(n for n in sizes if "failed" not in runs[str(n)]))  # rx needs the workers' epoch records
    failed = {n: r["failed"] for n, r in runs.items() if "failed" in r}
    figures = {
        "driver_peak_rss_mb": driver,
        "node_peak_memory_mb": node,
        "worker_rx_bytes_over_shard_bytes": runs[trained]["worker_rx_bytes_over_shard_bytes"],
        "samples_per_s_over_in_memory": doc["feeding"]["parquet_over_c"],
        "predict_samples_per_s_over_single": doc["predict"]["ratio"],
    }
    met = {
        "driver_peak_rss_mb": driver[large] <= 1.10 * driver[small] and not failed,  # a cut run's peak is partial
        "node_peak_memory_mb": max(node.values()) <= 1.10 * min(node.values()) and max(node.values()) < cap
        and not failed,
        "worker_rx_bytes_over_shard_bytes": figures["worker_rx_bytes_over_shard_bytes"] <= 1.10,
        "samples_per_s_over_in_memory": figures["samples_per_s_over_in_memory"] >= 0.9,
        "predict_samples_per_s_over_single": figures["predict_samples_per_s_over_single"] >= 0.8,
    }
    return {**figures, "goals": GOALS, "goal_met": met, "node_cap_mb": cap,
            "node_peak_working_set_mb": {n: node_peak(r["nodes"], "working_set") for n, r in runs.items()},
            "worker_rx_size": int(trained), "runs_failed": failed}


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO / "data" / "data-scale",
                        help="where the Parquet data sets are written once and reused, and the runs are kept "
                        "(default data/data-scale)")
    parser.add_argument("--fresh", action="store_true", help="measure every stage again (the data sets are kept)")
    parser.add_argument("--predict-model", type=Path, metavar="RUN_DIR",
                        help="the finished run whose model the scoring uses (default: the largest size's run)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped: the cluster and its namespaces go too
    spec = dict(QUICK if args.quick else FULL)
    out = Path(args.out)
    doc = json.loads(out.read_text()) if out.is_file() and not args.fresh else {}
    if doc and (doc.get("settings") != spec):
        doc = {}  # measured with other settings: start again
    doc.setdefault("runs", {})
    doc.update({"benchmark": NAME, "mode": "quick" if args.quick else "full", "settings": spec})
    env = environment()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"data scale benchmark ({doc['mode']} mode): sizes {spec['sizes']}, {env['cpu_count']} CPUs", flush=True)
    started = time.monotonic()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    sets = data_sets(args.data_dir, spec["sizes"], spec["rows_per_file"])
    doc["data_sets"] = {str(n): v for n, v in sets.items()}
    sizes = sorted(sets)
    progress = Progress(sum(sizes) + 3 * max(sizes) + min(sizes))
    work = args.data_dir / f"work-{doc['mode']}"  # kept: a resumed benchmark scores with the runs' models
    work.mkdir(exist_ok=True)
    if "feeding" not in doc:
        progress.start(f"feeding: {spec['feed_rows']:,} rows x {spec['feed_epochs']} epochs, (c), (a) Parquet, "
                       "(c), (a) in-memory rows, (c)")
        doc["feeding"] = feeding(sets[min(sizes)], spec, work)
        print(f"    Parquet / (c) {doc['feeding']['parquet_over_c']:.3f}, in-memory rows / (c) "
              f"{doc['feeding']['in_memory_rdd_over_c']:.3f}", flush=True)
        write_json(out, doc)
    cluster_stages(doc, out, sets, spec, work, progress, args.predict_model)
    env["load_average_1m_end"] = os.getloadavg()[0]
    doc["environment"] = env
    doc["caps"] = {"spark_workers": WORKERS + 1, "tf_workers": WORKERS, "node_cpus": spec["node_cpus"],
                   "node_memory": spec["node_memory"], "master_memory": spec["master_memory"], "link": spec["link"],
                   "sum_of_spark_worker_caps_mb": _mb((WORKERS + 1) * _bytes(spec["node_memory"]))}
    doc.update(headline(doc, sizes))
    doc["seconds"] = round(time.monotonic() - started + doc.get("seconds", 0.0), 1)
    write_json(out, doc)
    print(summary_table(doc, sizes))
    for key, ok in doc["goal_met"].items():
        print(f"  {key}: {doc[key]}  goal {GOALS[key]}: {'met' if ok else 'MISSED'}")
    print(f"wrote {out} ({doc['seconds']:.0f} s)")
    return 0


def _bytes(size: str) -> int:
    from ddl_commodity.resources.cgroups import parse_size

    return parse_size(size)


def summary_table(doc: dict, sizes: list[int]) -> str:
    rows = []
    for n in sizes:
        r, d = doc["runs"][str(n)], doc["data_sets"][str(n)]
        rows.append((n, d["spectra_bytes"] / 2**30, r["driver_peak_rss_mb"], node_peak(r["nodes"]),
                     r.get("worker_rx_bytes_over_shard_bytes", r.get("failed")), r["run_seconds"]))
    return table(["rows", "GiB of spectra", "driver peak RSS MB", "node peak MB", "worker rx / shard bytes",
                  "run s"], rows)


if __name__ == "__main__":
    sys.exit(main())
