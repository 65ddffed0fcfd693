"""RDD bundles for Spark-input training (thesis Fig 5.2).

Spectra and labels are zipped, numbered with ``zipWithIndex`` (the global index is the row of the HDF5
file), the held-out validation rows are dropped, and every epoch is cut into M *feed partitions*, one per
worker:

* ``same``: each of the M partitions of an epoch holds the whole training set;
* ``disjoint``: partition m of an epoch holds shard m, a seeded 1/M split of the training set.

A partition is fed as a few :class:`Bundle` records (whole mini-batches as arrays), not one record per
spectrum: TFoS moves records through a Python queue one at a time, and a 1800-float row per queue item is
the slow feeding its users complain about. The last bundle of a partition has ``last=True`` so a worker
knows where its epoch ends.

Spark hands a feed partition to whichever worker executor is free; which worker gets which shard can
change between epochs. Every worker logs a digest of the indices it trained on, which is what proves
the mode that really ran.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from pyspark import RDD, SparkContext


class Bundle(NamedTuple):
    """One feed record: ``x`` (b, bands) float32, ``y`` (b,) int32, ``index`` (b,) int64 global rows."""

    epoch: int
    shard: int
    last: bool
    index: np.ndarray
    x: np.ndarray
    y: np.ndarray


def shard_assignment(num_rows: int, train_index: np.ndarray, workers: int, seed: int) -> np.ndarray:
    """Shard id (0..M-1) of every row; validation rows get -1.

    A seeded permutation of the training rows is dealt round-robin, so shards differ by at most one row
    and do not follow the file order (which could correlate with z).
    """
    shard = np.full(num_rows, -1, dtype=np.int16)
    order = np.random.default_rng(seed).permutation(train_index)
    shard[order] = np.arange(order.size) % workers
    return shard


def indexed_records(sc: SparkContext, spectra: np.ndarray, labels: np.ndarray, slices: int) -> RDD:
    """``(global_index, (x, y))`` for every row, numbered by ``zipWithIndex`` (Fig 5.2)."""
    bounds = np.linspace(0, len(labels), slices + 1, dtype=np.int64)
    chunks = [(spectra[a:b], labels[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    rows = sc.parallelize(chunks, len(chunks)).flatMap(lambda c: zip(c[0], c[1], strict=True))
    return rows.zipWithIndex().map(lambda r: (r[1], r[0]))


def _bundler(epoch: int, shard: int, bundle_size: int, seed: int):
    def make_bundles(records: Iterator[tuple[int, tuple[np.ndarray, np.ndarray]]]) -> Iterator[Bundle]:
        rows = list(records)
        if not rows:
            return
        index = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        x = np.stack([r[1][0] for r in rows]).astype(np.float32, copy=False)
        y = np.fromiter((r[1][1] for r in rows), dtype=np.int32, count=len(rows))
        # Keras shuffles every epoch; do the same, reproducibly, before cutting into bundles.
        order = np.random.default_rng([seed, epoch, shard]).permutation(len(rows))
        index, x, y = index[order], x[order], y[order]
        starts = range(0, len(rows), bundle_size)
        for i, a in enumerate(starts):
            b = a + bundle_size
            yield Bundle(epoch, shard, i == len(starts) - 1, index[a:b], x[a:b], y[a:b])

    return make_bundles


def epoch_feed_rdd(
    sc: SparkContext,
    records: RDD,
    shards: np.ndarray,
    workers: int,
    epochs: int,
    distribution: str,
    bundle_size: int,
    seed: int,
    first_epoch: int = 0,
) -> RDD:
    """The training feed: ``workers`` partitions per epoch from ``first_epoch`` (a resumed run) to ``epochs``.

    ``records`` is the output of :func:`indexed_records`; ``shards`` of :func:`shard_assignment`.
    """
    if distribution not in ("same", "disjoint"):
        raise ValueError(f"unknown data distribution {distribution!r}")
    shard_of = sc.broadcast(shards)
    train = records.filter(lambda r: shard_of.value[r[0]] >= 0).cache()
    parts = []
    for epoch in range(first_epoch, epochs):
        for m in range(workers):
            if distribution == "same":
                selected = train
            else:
                selected = train.filter(lambda r, m=m: shard_of.value[r[0]] == m)
            parts.append(selected.coalesce(1).mapPartitions(_bundler(epoch, m, bundle_size, seed)))
    return sc.union(parts)


def index_digest(indices: np.ndarray) -> str:
    """Order-independent SHA-256 of a set of global indices (what a worker trained on in an epoch)."""
    import hashlib

    return hashlib.sha256(np.sort(np.asarray(indices, dtype=np.int64)).tobytes()).hexdigest()
