"""summary.json's data-distribution check must flag every way the digests can contradict the mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ddl_commodity.data.rdd import index_digest, shard_assignment
from ddl_commodity.engines.distribution_check import check_distribution
from ddl_commodity.experiments.api import Dataset
from ddl_commodity.experiments.registry import parse_config

ROWS = 50
TRAIN = np.arange(5, ROWS)


def setup(distribution: str):
    cfg = parse_config({"seed": 4, "training": {"workers": 2, "data_distribution": distribution}})
    prepared = Dataset(Path("x.h5"), (np.zeros((ROWS, 1)),), np.zeros(ROWS), TRAIN, np.arange(5))
    shards = shard_assignment(ROWS, TRAIN, 2, 4)
    rows = {m: (TRAIN if distribution == "same" else np.flatnonzero(shards == m)) for m in (0, 1)}
    return cfg, prepared, rows


def rec(worker: str, epoch: int, shard: int, rows: np.ndarray) -> dict:
    return {"worker": worker, "epoch": epoch, "feed_epoch": epoch - 1, "shard": shard,
            "index_digest": index_digest(rows), "index_count": len(rows)}


def test_consistent_runs_pass() -> None:
    for mode in ("same", "disjoint"):
        cfg, prepared, rows = setup(mode)
        curves = {"worker-0": [rec("worker-0", 1, 0, rows[0]), rec("worker-0", 2, 1, rows[1])],
                  "worker-1": [rec("worker-1", 1, 1, rows[1]), rec("worker-1", 2, 0, rows[0])]}
        assert check_distribution(cfg, prepared, curves) == {"mode": mode, "consistent": True, "problems": []}


def test_wrong_rows_are_flagged() -> None:
    cfg, prepared, rows = setup("disjoint")
    curves = {"worker-0": [rec("worker-0", 1, 0, TRAIN)],  # saw everything, not its shard
              "worker-1": [rec("worker-1", 1, 1, rows[1])]}
    out = check_distribution(cfg, prepared, curves)
    assert not out["consistent"] and "indices do not match shard 0" in out["problems"][0]


def test_same_mode_with_a_partial_epoch_is_flagged() -> None:
    cfg, prepared, _ = setup("same")
    curves = {"worker-0": [rec("worker-0", 1, 0, TRAIN[:-1])], "worker-1": [rec("worker-1", 1, 1, TRAIN)]}
    assert not check_distribution(cfg, prepared, curves)["consistent"]


def test_two_partitions_of_one_epoch_on_one_worker_are_flagged() -> None:
    cfg, prepared, rows = setup("disjoint")
    curves = {"worker-0": [rec("worker-0", 1, 0, rows[0]), {**rec("worker-0", 2, 1, rows[1]), "feed_epoch": 0}]}
    problems = check_distribution(cfg, prepared, curves)["problems"]
    assert any("not one partition to each of 2" in p for p in problems)
