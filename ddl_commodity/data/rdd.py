"""RDD bundles for Spark-input training (thesis Fig 5.2).

Spectra and labels are zipped and numbered with ``zipWithIndex`` (the global index is the row of the data
file; the executors read the rows from a copy of it), then packed back into one :class:`Chunk` of arrays per
partition and cached. The feed has M *feed partitions*, one per worker, each selecting its rows from every
chunk with one NumPy mask and cutting them into every epoch's bundles:

* ``same``: each of the M partitions holds the whole training set, every epoch;
* ``disjoint``: partition m holds shard m, a seeded 1/M split of the training set, every epoch.

Held-out validation rows belong to no shard and are never fed. Chunks, not rows, are what Spark caches and
moves between the JVM and Python: one pickled object per row would make feeding an epoch of land-cover
patches take several times its training. A partition is fed as a few :class:`Bundle` records (whole
mini-batches as arrays), not one record per sample: TFoS moves records through a Python queue one at a time.
The last bundle of an epoch has ``last=True`` so a worker knows where its epoch ends.

Which worker gets which shard can change between feed jobs (a run that tolerates worker loss feeds one epoch
per job). Every worker logs a digest of the indices it trained on, which is what proves the mode that really
ran.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from pyspark import RDD, SparkContext


class Bundle(NamedTuple):
    """One feed record: ``x`` (b, bands) float32, ``y`` (b,) the labels' dtype (int32 classes or float32
    targets), ``index`` (b,) int64 global rows."""

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


class Chunk(NamedTuple):
    """Consecutive rows as arrays: ``index`` (n,) int64 global rows, ``x`` (n, d) float32, ``y`` (n,) in the
    labels' dtype (int32 classes or float32 targets, as the data file's rows were given)."""

    index: np.ndarray
    x: np.ndarray
    y: np.ndarray


def indexed_records(sc: SparkContext, spectra: np.ndarray, labels: np.ndarray, slices: int, workdir: Path) -> RDD:
    """``(global_index, (x, y))`` for every row, numbered by ``zipWithIndex`` (Fig 5.2).

    The arrays are written to ``workdir`` as ``.npy`` files that Spark ships to the executors (``addFile``);
    each task reads its slice of rows from its copy. Parallelizing the arrays instead would put every row
    inside the driver's tasks: 2.5K land-cover patches make 85 MB tasks, beyond the driver JVM's 1 GB heap.
    """
    stem = f"feed-rows-{uuid.uuid4().hex[:8]}"
    names = (f"{stem}.x.npy", f"{stem}.y.npy")
    for name, array in zip(names, (spectra, labels), strict=True):
        np.save(Path(workdir) / name, array)
        sc.addFile(str(Path(workdir) / name))
    bounds = np.linspace(0, len(labels), slices + 1, dtype=np.int64)
    ranges = [(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]
    rows = sc.parallelize(ranges, len(ranges)).flatMap(_row_reader(*names))
    return rows.zipWithIndex().map(lambda r: (r[1], r[0]))


def _row_reader(x_name: str, y_name: str):
    def rows(bounds: tuple[int, int]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        from pyspark import SparkFiles

        a, b = bounds
        x = np.load(SparkFiles.get(x_name), mmap_mode="r")[a:b]
        y = np.load(SparkFiles.get(y_name), mmap_mode="r")[a:b]
        return zip(np.array(x), np.array(y), strict=True)

    return rows


def indexed_chunks(sc: SparkContext, x: np.ndarray, y: np.ndarray, slices: int, workdir: Path) -> RDD:
    """The rows of :func:`indexed_records`, numbered there, packed into one :class:`Chunk` per partition."""
    return indexed_records(sc, x, y, slices, workdir).mapPartitions(_pack)


def _pack(records: Iterator[tuple[int, tuple[np.ndarray, np.ndarray]]]) -> Iterator[Chunk]:
    rows = list(records)
    if rows:
        yield Chunk(np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
                    np.stack([r[1][0] for r in rows]).astype(np.float32, copy=False),
                    np.stack([r[1][1] for r in rows]))  # the labels' own dtype: classes or float targets


def _select(chunk: Chunk, shards: np.ndarray, shard: int | None) -> Chunk:
    """A chunk's training rows (``shard`` None) or the rows of one shard."""
    chunk = Chunk(*chunk)
    of = shards[chunk.index]
    keep = of >= 0 if shard is None else of == shard
    return Chunk(chunk.index[keep], chunk.x[keep], chunk.y[keep])


def _bundler(epochs: range, shard: int, bundle_size: int, seed: int, shard_of, select: int | None):
    # Selection happens here, in the one Python pass over the coalesced chunks: a separate map() before
    # coalesce(1) would start a Python worker per chunk, which costs far more than the pass itself.
    def make_bundles(chunks: Iterator[Chunk]) -> Iterator[Bundle]:
        parts = [_select(c, shard_of.value, select) for c in chunks]
        index = np.concatenate([c.index for c in parts]) if parts else np.empty(0, np.int64)
        if not len(index):
            return
        x, y = np.concatenate([c.x for c in parts]), np.concatenate([c.y for c in parts])
        del parts  # one copy of a shard, read once for all epochs (a worker's 8K-patch shard is 270 MB; 2 GB node)
        starts = range(0, len(index), bundle_size)
        for epoch in epochs:
            # Keras shuffles every epoch; do the same, reproducibly. Each bundle gathers its own rows: no
            # second, permuted copy of the shard.
            order = np.random.default_rng([seed, epoch, shard]).permutation(len(index))
            for i, a in enumerate(starts):
                rows = order[a:a + bundle_size]
                yield Bundle(epoch, shard, i == len(starts) - 1, index[rows], x[rows], y[rows])

    return make_bundles


def epoch_feed_rdd(
    sc: SparkContext,
    chunks: RDD,
    shards: np.ndarray,
    workers: int,
    epochs: int,
    distribution: str,
    bundle_size: int,
    seed: int,
    first_epoch: int = 0,
) -> RDD:
    """The training feed of epochs ``first_epoch`` (a resumed run) to ``epochs - 1``: ``workers`` partitions,
    partition m holding worker slot m's bundles of every one of those epochs, epoch after epoch.

    One partition per worker, not per epoch and worker: a feed task then runs from the first epoch to the last
    without a Spark job or task start between epochs (0.2-0.4 s each), and no worker can take a
    second partition of an epoch. ``chunks`` is the output of :func:`indexed_chunks` (cache it: every
    partition reads it); ``shards`` of :func:`shard_assignment`.
    """
    if distribution not in ("same", "disjoint"):
        raise ValueError(f"unknown data distribution {distribution!r}")
    shard_of = sc.broadcast(shards)
    parts = []
    for m in range(workers):
        select = None if distribution == "same" else m
        bundler = _bundler(range(first_epoch, epochs), m, bundle_size, seed, shard_of, select)
        parts.append(chunks.coalesce(1).mapPartitions(bundler))
    return sc.union(parts)


def index_digest(indices: np.ndarray) -> str:
    """Order-independent SHA-256 of a set of global indices (what a worker trained on in an epoch)."""
    import hashlib

    return hashlib.sha256(np.sort(np.asarray(indices, dtype=np.int64)).tobytes()).hexdigest()
