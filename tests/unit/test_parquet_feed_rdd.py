"""The feed of a Parquet data set, built on a real local SparkContext: its tasks carry the pieces' names, not
rows, and stream the rows of their shard."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ddl_commodity.data.parquet import Column, pieces
from ddl_commodity.data.rdd import index_digest
from ddl_commodity.data.redshift import NUM_BANDS, write_redshift_parquet
from ddl_commodity.data.streaming import _streamer, piece_feed_rdd, piece_shards, pieces_of, validation_pieces

SPECTRUM, LABEL = Column("spectrum", (NUM_BANDS,)), Column("label", (), "int32")


def test_feed_tasks_carry_names_and_read_their_shard(local_spark, tmp_path: Path) -> None:
    from pyspark import cloudpickle

    write_redshift_parquet(tmp_path / "red", 1200, seed=3, rows_per_file=100)  # 8.6 MB of spectra
    found = pieces(str(tmp_path / "red"))
    validation = validation_pieces(found, 0.1, seed=3)
    shards = piece_shards(found, validation, workers=2, seed=3)
    rdd = piece_feed_rdd(local_spark, found, shards, 2, epochs=1, distribution="disjoint", bundle_size=64, seed=3,
                         inputs=[SPECTRUM], label=LABEL)
    # What a feed task carries from the driver: the function streaming its shard, with the pieces' names.
    task = _streamer(pieces_of(found, shards, 0), (SPECTRUM,), LABEL, range(1), 0, 64, 3)
    assert len(cloudpickle.dumps(task)) < 20_000 < (shards == 0).sum() * NUM_BANDS * 4
    bundles = rdd.collect()
    for m in (0, 1):
        index = np.concatenate([b.index for b in bundles if b.shard == m])
        assert index_digest(index) == index_digest(np.flatnonzero(shards == m))
