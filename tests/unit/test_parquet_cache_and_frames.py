"""``data.cache`` and DataFrames on a real local SparkContext: the rows Spark persists at the level asked for
and the epochs fed from them; a DataFrame written as the toolkit's Parquet data set by its executors, its schema
checked from ``df.schema``; the redshift trivial estimator from class counts."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from ddl_commodity.data.parquet import ROW, Column, pieces, read_piece
from ddl_commodity.data.rdd import index_digest
from ddl_commodity.data.redshift import NUM_BANDS, NUM_CLASSES, write_redshift_parquet
from ddl_commodity.data.streaming import (
    cached_epoch_feed,
    persisted_pieces,
    piece_shards,
    pieces_of,
    storage_report,
    validation_pieces,
)
from ddl_commodity.errors import ConfigError, DataError, UserInputError

pytestmark = pytest.mark.xdist_group("local_spark")

SPECTRUM, LABEL = Column("spectrum", (NUM_BANDS,)), Column("label", (), "int32", (0, NUM_CLASSES))


@pytest.fixture(scope="module")
def spectra(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("frames") / "red"
    write_redshift_parquet(out, 300, seed=5, rows_per_file=60)
    return out


@pytest.mark.cluster  # a SparkContext's jobs: tens of seconds
@pytest.mark.parametrize(("cache", "level"), [("disk", "DISK_ONLY"), ("memory", "MEMORY_ONLY")])
def test_cached_rows_are_held_at_the_level_asked_and_feed_every_epoch(local_spark, spectra: Path, cache: str,
                                                                      level: str) -> None:
    from pyspark import StorageLevel

    found = pieces(str(spectra))
    shards = piece_shards(found, validation_pieces(found, 0.1, seed=5), workers=2, seed=5)
    slots = [persisted_pieces(local_spark, pieces_of(found, shards, m), [SPECTRUM], LABEL, cache) for m in (0, 1)]
    assert all(rdd.getStorageLevel() == getattr(StorageLevel, level) for rdd in slots)
    assert storage_report(local_spark, slots)["cached_partitions"] == 0  # nothing read before the first epoch
    epochs = [cached_epoch_feed(local_spark, slots, epoch, bundle_size=16, seed=5).collect() for epoch in (0, 1)]
    held = storage_report(local_spark, slots)
    persistent = local_spark._jsc.getPersistentRDDs()
    assert all(persistent.containsKey(rdd.id()) for rdd in slots)
    assert held["storage_level"] == str(getattr(StorageLevel, level))
    assert held["cached_partitions"] == held["partitions"] == len(pieces_of(found, shards, None))
    spectra_bytes = int((shards >= 0).sum()) * NUM_BANDS * 4  # pickled float32 arrays: a little more
    assert spectra_bytes < (held["disk_bytes"] if cache == "disk" else held["memory_bytes"]) < 1.2 * spectra_bytes
    assert held["memory_bytes" if cache == "disk" else "disk_bytes"] == 0
    for epoch, bundles in enumerate(epochs):
        assert {b.epoch for b in bundles} == {epoch}
        for m in (0, 1):
            mine = [b for b in bundles if b.shard == m]
            assert index_digest(np.concatenate([b.index for b in mine])) == index_digest(np.flatnonzero(shards == m))
            assert [b.last for b in mine] == [False] * (len(mine) - 1) + [True]
    for rdd in slots:
        rdd.unpersist()


def _frame(local_spark, spectra: Path, keep_row: bool):
    from pyspark.sql import SparkSession

    df = SparkSession(local_spark).read.parquet(str(spectra))
    return df if keep_row else df.drop(ROW)


@pytest.mark.cluster  # a SparkContext's jobs: tens of seconds
@pytest.mark.parametrize("keep_row", [True, False])
def test_a_dataframe_is_written_as_the_toolkits_parquet_by_its_executors(local_spark, spectra: Path,
                                                                         tmp_path: Path, keep_row: bool) -> None:
    from ddl_commodity.launch.sources import stage_frame

    uri = stage_frame(_frame(local_spark, spectra, keep_row), [SPECTRUM], LABEL, str(tmp_path / "staged"))
    staged = pieces(uri, [SPECTRUM, LABEL])  # numbered 0..N-1 without gaps, the toolkit's schema
    assert sum(p.rows for p in staged) == 300 and not list(tmp_path.glob("*.partial-*"))

    def rows(found) -> dict:
        got = [read_piece(p, [SPECTRUM, LABEL]) for p in found]
        index = np.concatenate([g[ROW] for g in got])
        x, y = np.concatenate([g["spectrum"] for g in got]), np.concatenate([g["label"] for g in got])
        return {int(i): (float(x[k].sum()), int(y[k])) for k, i in enumerate(index)}

    original, written = rows(pieces(str(spectra))), rows(staged)
    if keep_row:  # the stored index is each row's identity
        assert written == original
    else:  # zipWithIndex numbers the rows in the DataFrame's partition order
        assert sorted(written) == list(range(300)) and sorted(written.values()) == sorted(original.values())
    with pytest.raises(DataError, match="exists; choose a new place"):
        stage_frame(_frame(local_spark, spectra, keep_row), [SPECTRUM], LABEL, str(tmp_path / "staged"))


@pytest.mark.cluster  # a SparkContext's jobs: tens of seconds
def test_a_dataframe_that_does_not_fit_the_experiment_fails_in_one_line(local_spark, spectra: Path,
                                                                        tmp_path: Path) -> None:
    from pyspark.sql import functions as F

    from ddl_commodity.launch.sources import frame_columns, stage_frame

    df = _frame(local_spark, spectra, keep_row=False)
    cases = [(df.drop("label"), "has no column 'label'"),
             (df.withColumn("label", F.col("label").cast("double")), "'label' must hold integers"),
             (df.withColumn("spectrum", F.lit(1.0)), f"'spectrum' must be an array of {NUM_BANDS} numbers"),
             (df.withColumn(ROW, F.lit("a")), "'row' (the stored global row index) must be an integer")]
    for bad, says in cases:
        with pytest.raises(UserInputError, match=re.escape(says)) as err:
            frame_columns(bad, [SPECTRUM], LABEL)
        assert "\n" not in str(err.value)
    short = df.withColumn("spectrum", F.slice("spectrum", 1, 10))
    with pytest.raises(DataError, match=rf"DataFrame partition \d+: column 'spectrum' holds 10 values in a row, "
                                        f"expected {NUM_BANDS}") as err:
        stage_frame(short, [SPECTRUM], LABEL, str(tmp_path / "short"))
    assert "\n" not in str(err.value) and not list(tmp_path.iterdir())  # nothing half-written


def test_the_trivial_estimator_from_class_counts_is_the_one_from_labels(spectra: Path) -> None:
    from ddl_commodity.data.redshift_metrics import trivial_metrics
    from ddl_commodity.experiments.redshift import RedshiftConfig, RedshiftExperiment, label_counts
    from ddl_commodity.experiments.redshift import trivial_from_counts as from_counts

    rng = np.random.default_rng(1)
    for n_train, n_val in ((1001, 97), (1000, 100), (7, 2)):
        train, val = rng.integers(0, NUM_CLASSES, n_train), rng.integers(200, 400, n_val)
        counts = [np.bincount(a, minlength=NUM_CLASSES) for a in (train, val)]
        assert from_counts(*counts) == pytest.approx(trivial_metrics(train, val), abs=1e-12)
    cfg = RedshiftConfig(data={"source": str(spectra)}, training={"workers": 2})
    source = RedshiftExperiment().dataset(cfg)
    labels = np.concatenate([read_piece(p, [LABEL])["label"] for p in source.pieces])
    train, val = label_counts(source)
    assert np.array_equal(train, np.bincount(labels[source.train_index], minlength=NUM_CLASSES))
    assert np.array_equal(val, np.bincount(labels[source.validation_index], minlength=NUM_CLASSES))


def test_parquet_settings_that_cannot_work_are_refused_at_validation(spectra: Path) -> None:
    from ddl_commodity.config import validate
    from ddl_commodity.experiments.redshift import RedshiftConfig

    def refused(raw: dict, says: str) -> None:
        with pytest.raises(ConfigError, match=says):
            validate(RedshiftConfig, {"experiment": "redshift", **raw}, "x.yaml")

    refused({"data": {"source": str(spectra)}, "training": {"baseline": True}}, "would load the whole data set")
    refused({"data": {"as_parquet": True}, "training": {"mode": "single"}}, "read by distributed runs")
    refused({"data": {"cache": "disk"}, "training": {"mode": "single"}}, "data.cache: Spark persists a data-parallel")
    ok = validate(RedshiftConfig, {"experiment": "redshift", "data": {"source": "x", "cache": "memory"}}, "x.yaml")
    assert ok.data.cache == "memory"


def test_as_parquet_writes_the_runs_data_file_once(tmp_path: Path) -> None:
    from ddl_commodity.experiments.redshift import RedshiftConfig, RedshiftExperiment
    from ddl_commodity.launch.sources import as_parquet

    experiment = RedshiftExperiment()
    cfg = RedshiftConfig(data={"samples": 400, "cache_dir": str(tmp_path), "as_parquet": True}, seed=2)
    converted = as_parquet(experiment, cfg)
    source = experiment.dataset(converted)
    (inputs,), labels = experiment.load(cfg, experiment.data_file(cfg))
    got = [read_piece(p, [SPECTRUM, LABEL]) for p in source.pieces]
    assert np.array_equal(np.concatenate([g["spectrum"] for g in got]), inputs)
    assert np.array_equal(np.concatenate([g["label"] for g in got]), labels)
    assert len(source.pieces) >= 32 and converted.data.source.endswith(".parquet")
    assert as_parquet(experiment, cfg).data.source == converted.data.source  # written once


def test_a_dataframe_run_refuses_another_master_before_anything_starts(tmp_path: Path) -> None:
    """The DataFrame's session decides the master; a second one would be silently ignored."""
    import ddl_commodity

    config = {"experiment": "redshift", "output": {"runs_dir": str(tmp_path / "runs")}}
    with pytest.raises(UserInputError, match="leave master out") as err:
        ddl_commodity.run(config, data=object(), master="spark://elsewhere:7077")
    assert "\n" not in str(err.value) and not (tmp_path / "runs").exists()

