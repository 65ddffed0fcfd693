"""``ddl_commodity.run(config, data=<DataFrame>)``: the DataFrame's own session (on an embedded standalone
cluster, made from ``spark_conf``) writes it as Parquet on its executors, and the run trains from it on that
session; the index digests prove same and disjoint data. ``data.cache`` persists the rows at the level asked,
as Spark's storage status reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ddl_commodity.data.rdd import index_digest
from tests.integration.test_redshift_cluster import SEED, assert_no_leftover_processes, worker_records

pytestmark = pytest.mark.cluster

#: Runs in a fresh Python: a process holds one SparkContext, and this one is the caller's.
CALLER = """
import json, os, sys
from pathlib import Path

os.environ["PYSPARK_PYTHON"] = sys.executable
import ddl_commodity
from ddl_commodity.launch.api import resolve
from ddl_commodity.launch.embedded import started
from pyspark.sql import SparkSession

doc, data, keep_row, where = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3] == "row", Path(sys.argv[4])
with started(resolve(doc)[1], where) as state:
    conf = ddl_commodity.spark_conf(doc).setMaster(state.master_url)
    spark = SparkSession.builder.config(conf=conf).getOrCreate()
    df = spark.read.parquet(data)
    summary = ddl_commodity.run(doc, data=df if keep_row else df.drop("row"), run_id="frame", progress=False)
    spark.stop()
print("final", json.dumps(summary.final))
"""


# One run end to end: the memory level and a stored row index are held and written as asked in
# tests/unit/test_parquet_cache_and_frames.py, on a real SparkContext, in a fraction of a run's time.
@pytest.mark.parametrize(("distribution", "cache", "row"), [("disjoint", "disk", "")])
def test_a_run_of_a_dataframe_trains_each_shard_it_says(tmp_path: Path, distribution: str, cache: str,
                                                        row: str) -> None:
    from pyspark import StorageLevel

    from ddl_commodity.experiments.registry import load

    data = tmp_path / "spectra"
    made = subprocess.run([sys.executable, "-m", "ddl_commodity.cli", "data", "redshift", "--samples", "480",
                           "--seed", str(SEED), "--format", "parquet", "--rows-per-file", "60", "--out", str(data)],
                          capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    doc = {"experiment": "redshift", "name": f"frame-{distribution}", "seed": SEED,
           "data": {"validation_fraction": 0.1, "cache": cache},
           "model": {"filters": [2, 2], "dropout": 0.0},
           "training": {"mode": "data_parallel", "workers": 2, "epochs": 2, "batch_size": 16,
                        "learning_rate": 0.003, "data_distribution": distribution},
           "ps": {"s": 2}, "output": {"runs_dir": str(tmp_path / "runs")}}
    proc = subprocess.run([sys.executable, "-c", CALLER, json.dumps(doc), str(data), row, str(tmp_path / "cluster")],
                          capture_output=True, text=True, timeout=480, check=False)
    run_dir = tmp_path / "runs" / "frame"
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "writing the DataFrame as Parquet on its executors" in proc.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["data_distribution_check"] == {"mode": distribution, "consistent": True, "problems": []}

    experiment, loaded = load(run_dir / "config.yaml")
    assert loaded.data.source == (run_dir / "source").as_uri()  # the run reads what the executors wrote
    source = experiment.dataset(loaded)
    assert source.num_rows == 480
    shards = source.shards(2, SEED)
    train = index_digest(source.train_index)
    expected = {m: train if distribution == "same" else index_digest((shards == m).nonzero()[0]) for m in (0, 1)}
    epochs = [r for recs in worker_records(run_dir).values() for r in recs]
    assert len(epochs) == 4 and all(r["index_digest"] == expected[r["shard"]] for r in epochs), epochs

    assert summary["validation_samples"] == len(source.validation_index) <= 0.15 * 480  # pieces of 15 rows
    assert summary["final"]["val_loss"] > 0 and not (run_dir / "validation.npz").exists()
    held = summary["data_cache"]  # what Spark's storage status said after the first epoch
    level = StorageLevel.MEMORY_ONLY if cache == "memory" else StorageLevel.DISK_ONLY
    assert held["storage_level"] == str(level), held
    assert held["cached_partitions"] == held["partitions"] > 0, held
    assert held["memory_bytes" if cache == "memory" else "disk_bytes"] > len(source.train_index) * 1800 * 4
    trivial = summary["trivial_estimator"]  # from class counts: the driver held no labels' rows
    assert 1.0 <= trivial["z"] < 1.8 and 0 < trivial["dz_median"] < 0.5, trivial
    assert_no_leftover_processes(tmp_path)


def test_a_model_parallel_run_of_a_dataframe_streams_what_its_executors_wrote(tmp_path: Path) -> None:
    """The regression example, model parallel (two blocks on two workers), from a DataFrame: the input node
    streams the row groups the DataFrame's executors wrote, a float target and all."""
    import yaml

    repo = Path(__file__).resolve().parents[2]
    data = tmp_path / "spectra"
    made = subprocess.run([sys.executable, "-m", "ddl_commodity.cli", "data", "redshift", "--samples", "600",
                           "--seed", "3", "--format", "parquet", "--rows-per-file", "60", "--out", str(data)],
                          capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    doc = yaml.safe_load((repo / "examples" / "redshift-regression-model-parallel.yaml").read_text())
    doc["data"] = {"validation_fraction": 0.1}
    doc["model"].update(filters=4, units=8)
    doc["training"].update(epochs=2, split=str(repo / doc["training"]["split"]))
    doc["output"] = {"runs_dir": str(tmp_path / "runs")}
    proc = subprocess.run([sys.executable, "-c", CALLER, json.dumps(doc), str(data), "", str(tmp_path / "cluster")],
                          capture_output=True, text=True, timeout=480, check=False, cwd=repo)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = tmp_path / "runs" / "frame"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["mode"] == "model_parallel" and summary["data"] == (run_dir / "source").as_uri()
    assert summary["train_samples"] + summary["validation_samples"] == 600
    epochs = worker_records(run_dir)["worker-0"]
    assert [r["samples"] for r in epochs] == [summary["train_samples"]] * 2, epochs  # every training row
    assert summary["final"]["val_loss"] > 0
    assert_no_leftover_processes(tmp_path)
