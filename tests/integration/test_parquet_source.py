"""Data parallel from a Parquet data set the executors read (``data.source``): every worker streams its own
shard's row groups, the nodes read the validation row groups, the index digests prove same and disjoint data,
and the driver ships no rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ddl_commodity.data.rdd import index_digest
from tests.integration.test_redshift_cluster import SEED, assert_no_leftover_processes, worker_records

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("distribution", ["same", "disjoint"])
def test_a_run_from_parquet_trains_each_shard_it_says(tmp_path: Path, distribution: str) -> None:
    from ddl_commodity.experiments.registry import load

    data = tmp_path / "spectra"
    made = subprocess.run([sys.executable, "-m", "ddl_commodity.cli", "data", "redshift", "--samples", "480",
                           "--seed", str(SEED), "--format", "parquet", "--rows-per-file", "60", "--out", str(data)],
                          capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    cfg = {"experiment": "redshift", "name": f"pq-{distribution}", "seed": SEED,
           "data": {"source": str(data), "validation_fraction": 0.1},
           "model": {"filters": [2, 2], "dropout": 0.0},
           "training": {"mode": "data_parallel", "workers": 2, "epochs": 2, "batch_size": 16,
                        "learning_rate": 0.003, "data_distribution": distribution},
           "ps": {"s": 2}, "output": {"runs_dir": str(tmp_path / "runs")}}
    path = tmp_path / "pq.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "ddl_commodity.cli", "run", str(path), "--run-id", "pq",
                           "--no-progress"], capture_output=True, text=True, timeout=420, check=False)
    run_dir = tmp_path / "runs" / "pq"
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"data distribution '{distribution}': confirmed by index digests" in proc.stdout

    experiment, loaded = load(run_dir / "config.yaml")
    source = experiment.dataset(loaded)
    shards = source.shards(2, SEED)
    train = index_digest(source.train_index)
    expected = {m: train if distribution == "same" else index_digest((shards == m).nonzero()[0]) for m in (0, 1)}
    epochs = [r for recs in worker_records(run_dir).values() for r in recs]
    assert len(epochs) == 4 and all(r["index_digest"] == expected[r["shard"]] for r in epochs), epochs
    if distribution == "disjoint":  # whole row groups: no piece is split between the two shards
        for piece in source.pieces:
            assert len(set(shards[piece.first_row:piece.first_row + piece.rows].tolist())) == 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["train_samples"] == len(source.train_index) and summary["validation_samples"] == 60
    assert summary["final"]["val_loss"] > 0 and summary["data"] == str(data)
    # The driver shipped no rows: no validation file, no data file among what Spark distributed.
    assert not (run_dir / "validation.npz").exists()
    if distribution == "disjoint":
        check_predict(run_dir, data, source, summary, tmp_path)
    assert_no_leftover_processes(tmp_path)


def check_predict(run_dir: Path, data: Path, source, summary: dict, tmp_path: Path) -> None:
    """`ddl predict` scores every row on the executors; on the validation rows it agrees with the run's own
    final score of them. Bad input stops it in one line before any cluster starts."""
    import numpy as np
    import pyarrow.parquet as pq

    def ddl_predict(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ddl_commodity.cli", "predict", str(run_dir), *args],
                              capture_output=True, text=True, timeout=420, check=False)

    proc = ddl_predict("--data", str(data), "--out", str(tmp_path / "predictions"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"scored 480 rows of {data}" in proc.stdout and proc.stderr == "", proc.stderr
    predicted = pq.read_table(tmp_path / "predictions")
    assert predicted.column_names == ["row", "class", "probability", "z"]
    assert sorted(predicted.column("row").to_pylist()) == list(range(480))
    truth = pq.read_table(data, columns=["row", "label"])
    label = dict(zip(truth.column("row").to_pylist(), truth.column("label").to_pylist(), strict=True))
    best = dict(zip(predicted.column("row").to_pylist(), predicted.column("class").to_pylist(), strict=True))
    accuracy = np.mean([best[i] == label[i] for i in source.validation_index.tolist()])
    assert abs(accuracy - summary["final"]["val_accuracy"]) < 1e-9, (accuracy, summary["final"])
    for args, says in ((("--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "p2")), "no such file"),
                       (("--data", str(data), "--out", str(tmp_path / "predictions")), "exists; choose a new")):
        bad = ddl_predict(*args)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and says in bad.stderr, bad.stderr


def test_a_model_parallel_run_streams_its_batches_from_parquet(tmp_path: Path) -> None:
    """The input node of a model-parallel run (the regression example, two blocks on two workers) reads its
    training batches piece by piece and the validation pieces itself: a float target from Parquet."""
    repo = Path(__file__).resolve().parents[2]
    data = tmp_path / "spectra"
    made = subprocess.run([sys.executable, "-m", "ddl_commodity.cli", "data", "redshift", "--samples", "600",
                           "--seed", "3", "--format", "parquet", "--rows-per-file", "60", "--out", str(data)],
                          capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    doc = yaml.safe_load((repo / "examples" / "redshift-regression-model-parallel.yaml").read_text())
    doc["data"] = {"source": str(data), "validation_fraction": 0.1}
    doc["model"].update(filters=4, units=8)
    doc["training"].update(epochs=3, split=str(repo / doc["training"]["split"]))
    doc["output"] = {"runs_dir": str(tmp_path / "runs")}
    path = tmp_path / "mp.yaml"
    path.write_text(yaml.safe_dump(doc))
    proc = subprocess.run([sys.executable, "-m", "ddl_commodity.cli", "run", str(path), "--run-id", "mp",
                           "--no-progress"], capture_output=True, text=True, timeout=420, check=False, cwd=repo)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stderr == "", proc.stderr
    summary = json.loads((tmp_path / "runs" / "mp" / "summary.json").read_text())
    assert summary["mode"] == "model_parallel" and summary["data"] == str(data)
    assert (summary["train_samples"], summary["validation_samples"]) == (540, 60)
    epochs = worker_records(tmp_path / "runs" / "mp")["worker-0"]
    assert [r["samples"] for r in epochs] == [540] * 3, epochs  # every training row once an epoch
    assert epochs[-1]["loss"] < epochs[0]["loss"] and summary["final"]["val_loss"] > 0, epochs
