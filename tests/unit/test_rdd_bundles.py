"""RDD bundles (Fig 5.2) on a real local SparkContext: zipWithIndex numbering, same vs disjoint feeds."""

from __future__ import annotations

import numpy as np
import pytest

from ddl_commodity.data.rdd import (
    Bundle,
    epoch_feed_rdd,
    index_digest,
    indexed_chunks,
    indexed_records,
    shard_assignment,
)

# One xdist worker for the module: each worker that ran one of these tests would start its own SparkContext.
pytestmark = pytest.mark.xdist_group("local_spark")


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(103, 6)).astype(np.float32)
    y = np.arange(103, dtype=np.int32) % 7
    train = np.setdiff1d(np.arange(103), [5, 50, 77])
    return x, y, train


def test_zip_with_index_numbers_rows_in_file_order(local_spark, toy, tmp_path) -> None:
    x, y, _ = toy
    recs = indexed_records(local_spark, x, y, 4, tmp_path).collect()
    assert [i for i, _ in recs] == list(range(103))
    for i, (xi, yi) in recs:
        np.testing.assert_array_equal(xi, x[i])
        assert yi == y[i]


def test_chunks_hold_the_numbered_rows_as_arrays(local_spark, toy, tmp_path) -> None:
    x, y, _ = toy
    chunks = indexed_chunks(local_spark, x, y, 4, tmp_path).collect()
    assert len(chunks) == 4
    index = np.concatenate([c.index for c in chunks])
    np.testing.assert_array_equal(index, np.arange(103))
    np.testing.assert_array_equal(np.concatenate([c.x for c in chunks]), x)
    np.testing.assert_array_equal(np.concatenate([c.y for c in chunks]), y)


def test_shards_partition_the_training_rows(toy) -> None:
    _, _, train = toy
    shards = shard_assignment(103, train, 3, seed=1)
    assert set(np.flatnonzero(shards >= 0)) == set(train)
    sizes = np.bincount(shards[shards >= 0])
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == train.size


@pytest.mark.parametrize("distribution", ["same", "disjoint"])
def test_epoch_feed(local_spark, toy, distribution: str, tmp_path) -> None:
    x, y, train = toy
    workers, epochs = 3, 3
    shards = shard_assignment(103, train, workers, seed=1)
    chunks = indexed_chunks(local_spark, x, y, 4, tmp_path).cache()
    feed = epoch_feed_rdd(local_spark, chunks, shards, workers, epochs, distribution, bundle_size=10, seed=3,
                          first_epoch=1)
    assert feed.getNumPartitions() == workers  # one per worker slot, holding every epoch
    parts = feed.glom().collect()
    for slot, bundles in enumerate(parts):
        bundles = [Bundle(*b) for b in bundles]
        assert all(b.shard == slot for b in bundles)
        assert [b.epoch for b in bundles] == sorted(b.epoch for b in bundles)  # epoch after epoch
        by_epoch = {e: [b for b in bundles if b.epoch == e] for e in (1, 2)}
        assert sorted({b.epoch for b in bundles}) == [1, 2]
        expected = train if distribution == "same" else np.flatnonzero(shards == slot)
        for epoch_bundles in by_epoch.values():
            assert [b.last for b in epoch_bundles] == [False] * (len(epoch_bundles) - 1) + [True]
            seen = np.concatenate([b.index for b in epoch_bundles])
            for b in epoch_bundles:  # every row still carries its own spectrum and label
                np.testing.assert_array_equal(b.x, x[b.index])
                np.testing.assert_array_equal(b.y, y[b.index])
            assert index_digest(seen) == index_digest(expected) and len(seen) == len(expected)
        # Same set, different order in the next epoch (reshuffled).
        first, second = (np.concatenate([b.index for b in by_epoch[e]]) for e in (1, 2))
        assert not np.array_equal(first, second)
    # One epoch's feed (a run that tolerates worker loss) is that epoch's bundles of the feed of several.
    one = epoch_feed_rdd(local_spark, chunks, shards, workers, 3, distribution, bundle_size=10, seed=3,
                         first_epoch=2).glom().collect()
    for slot, bundles in enumerate(one):
        again = [Bundle(*b) for b in parts[slot] if Bundle(*b).epoch == 2]
        assert [tuple(Bundle(*b).index) for b in bundles] == [tuple(b.index) for b in again]


def test_digest_is_order_independent() -> None:
    assert index_digest(np.array([3, 1, 2])) == index_digest(np.array([1, 2, 3]))
    assert index_digest(np.array([1, 2])) != index_digest(np.array([1, 2, 3]))
