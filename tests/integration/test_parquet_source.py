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
    assert_no_leftover_processes(tmp_path)
