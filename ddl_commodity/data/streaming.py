"""Spark-input feeding from a data set larger than one machine: whole pieces to shards, bundles streamed.

With rows in memory (:mod:`ddl_commodity.data.rdd`) a shard is any seeded 1/M of the rows. A Parquet data set
(:mod:`ddl_commodity.data.parquet`) is read where it lies, so a shard is made of whole pieces (row groups): a
worker's feed task then reads its shard's pieces and nothing else, one piece at a time, and no task holds
more than a few pieces whatever the data set's size. The validation rows are whole pieces too, the same for
every worker, read by the nodes that score them.

The global row index stays each row's identity: the shards come out as the same per-row array
:func:`~ddl_commodity.data.rdd.shard_assignment` gives (-1 for validation rows), so the index digests prove
which distribution ran exactly as for rows in memory.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ddl_commodity.data.parquet import ROW, Column, Piece, read_piece
from ddl_commodity.data.rdd import Bundle
from ddl_commodity.errors import DataError

if TYPE_CHECKING:
    from pyspark import RDD, SparkContext

#: Pieces whose rows are shuffled together while streaming: the shuffle's reach, and what a feed task holds.
SHUFFLE_WINDOW = 4
#: ``data.cache`` -> the Spark storage level the rows read from the pieces are persisted at.
STORAGE_LEVELS = {"memory": "MEMORY_ONLY", "disk": "DISK_ONLY"}

#: ``(index (n,) int64, x (n, d) float32, y (n,))``: rows read from pieces.
Rows = tuple[np.ndarray, np.ndarray, np.ndarray]


def validation_pieces(pieces: Sequence[Piece], validation_fraction: float, seed: int, keep: int = 1) -> list[int]:
    """Positions in ``pieces`` of the validation pieces: a seeded permutation's first pieces, until they hold
    ``validation_fraction`` of the rows, leaving at least ``keep`` pieces for training. The same for every
    number of workers (the held-out rows never change within a run, whoever is lost)."""
    rows = [p.rows for p in pieces]
    wanted = round(sum(rows) * validation_fraction)
    order = np.random.default_rng([seed, 0x5EED]).permutation(len(pieces))
    chosen: list[int] = []
    held = 0
    while held < wanted and len(chosen) < len(pieces) - keep:
        chosen.append(int(order[len(chosen)]))
        held += rows[chosen[-1]]
    if wanted and not chosen:
        raise DataError(f"{pieces[0].path if pieces else 'the data set'}: {len(pieces)} row group(s) leave none for "
                        "validation: write the data set with smaller row groups")
    return sorted(chosen)


def piece_shards(pieces: Sequence[Piece], validation: Sequence[int], workers: int, seed: int) -> np.ndarray:
    """Deal the training pieces (all but the positions ``validation``) whole to ``workers`` shards.

    A seeded permutation of them is walked once, each piece going to the shard with the fewest rows so far,
    so shards differ by at most about one piece.

    Returns:
        The shard of every row, ``(n,)`` int16, -1 for validation rows (as
        :func:`~ddl_commodity.data.rdd.shard_assignment`).

    Raises:
        DataError: fewer training pieces than shards (the data set needs more, smaller row groups).
    """
    held_out = set(validation)
    training = [i for i in range(len(pieces)) if i not in held_out]
    if len(training) < workers:
        raise DataError(f"{pieces[0].path if pieces else 'the data set'}: {len(training)} training row groups "
                        f"cannot make {workers} shards: write the data set with smaller row groups")
    load = np.zeros(workers, dtype=np.int64)
    shard = np.full(sum(p.rows for p in pieces), -1, dtype=np.int16)
    for i in np.random.default_rng([seed, workers]).permutation(training):
        m = int(np.argmin(load))
        shard[pieces[i].first_row:pieces[i].first_row + pieces[i].rows] = m
        load[m] += pieces[i].rows
    return shard


def pieces_of(pieces: Sequence[Piece], shards: np.ndarray, shard: int | None) -> list[Piece]:
    """The pieces of one shard (``shard`` None: every training piece)."""
    of = [int(shards[p.first_row]) for p in pieces]
    return [p for p, s in zip(pieces, of, strict=True) if (s >= 0 if shard is None else s == shard)]


def piece_rows(piece: Piece, inputs: Sequence[Column], label: Column | None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(index (n,) int64, x (n, d) float32 with the inputs flattened side by side, y (n,))`` of one piece
    (``y`` None without a ``label``: data to score)."""
    got = read_piece(piece, [*inputs, *([label] if label else [])])
    x = np.concatenate([got[c.name].reshape(len(got[ROW]), -1) for c in inputs], axis=1).astype(np.float32)
    return got[ROW], x, got[label.name] if label else None


def stream_bundles(pieces: Sequence[Piece], inputs: Sequence[Column], label: Column, epochs: range, shard: int,
                   bundle_size: int, seed: int, window: int = SHUFFLE_WINDOW,
                   read: Callable[[Piece], tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
                   ) -> Iterator[Bundle]:
    """Every epoch's bundles of ``pieces`` for feed slot ``shard``, read piece by piece.

    Each epoch visits the pieces in a seeded order and shuffles the rows of ``window`` pieces at a time (the
    streaming form of Keras's per-epoch shuffle); the last bundle of an epoch has ``last=True``.

    Args:
        pieces: what this slot trains on in every epoch.
        inputs: the input columns, flattened into ``x`` in this order; ``label``: the target column.
        epochs: the feed epochs to stream; ``shard``: the slot, part of the shuffle's seed and every bundle.
        bundle_size: rows per bundle; ``seed``: the run's seed.
        window: pieces shuffled together (what the task holds at once).
        read: reads one piece (default :func:`piece_rows` on ``inputs`` and ``label``).
    """
    read = read or (lambda p: piece_rows(p, inputs, label))
    for epoch in epochs:
        rng = np.random.default_rng([seed, epoch, shard])
        order = rng.permutation(len(pieces))
        starts = range(0, len(order), window)
        windows = (([read(pieces[i]) for i in order[a:a + window]], a == starts[-1]) for a in starts)
        yield from _window_bundles(windows, epoch, shard, bundle_size, rng)


def _window_bundles(windows: Iterator[tuple[list[Rows], bool]], epoch: int, shard: int, bundle_size: int,
                    rng: np.random.Generator) -> Iterator[Bundle]:
    """One epoch's bundles from ``(rows, final)`` windows, each window's rows shuffled together (with what the
    previous window left short of a bundle); the last bundle of the final window has ``last=True``."""
    carry: list[Rows] = []  # rows short of a bundle, for the next window
    for current, final in windows:
        index, x, y = _joined(carry + current)
        rows = rng.permutation(len(index))
        end = len(rows) if final else len(rows) - len(rows) % bundle_size
        for a in range(0, end, bundle_size):
            take = rows[a:a + bundle_size]
            yield Bundle(epoch, shard, final and a + bundle_size >= len(rows), index[take], x[take], y[take])
        carry = [(index[rows[end:]], x[rows[end:]], y[rows[end:]])]


def _joined(parts: list[Rows]) -> Rows:
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))  # type: ignore[return-value]


def piece_feed_rdd(sc: SparkContext, pieces: Sequence[Piece], shards: np.ndarray, workers: int, epochs: int,
                   distribution: str, bundle_size: int, seed: int, inputs: Sequence[Column], label: Column,
                   first_epoch: int = 0) -> RDD:
    """The training feed of epochs ``first_epoch`` to ``epochs - 1`` read from ``pieces``: ``workers``
    partitions, partition m streaming slot m's bundles (its shard's pieces for ``disjoint``, every training
    piece for ``same``), as :func:`~ddl_commodity.data.rdd.epoch_feed_rdd` lays them out for rows in memory.
    Its tasks read the pieces themselves: nothing but the pieces' names travels from the driver."""
    if distribution not in ("same", "disjoint"):
        raise ValueError(f"unknown data distribution {distribution!r}")
    parts = []
    for m in range(workers):
        mine = pieces_of(pieces, shards, None if distribution == "same" else m)
        stream = _streamer(mine, tuple(inputs), label, range(first_epoch, epochs), m, bundle_size, seed)
        parts.append(sc.parallelize([m], 1).mapPartitions(stream))
    return sc.union(parts)


def _streamer(pieces: list[Piece], inputs: tuple[Column, ...], label: Column, epochs: range, shard: int,
              bundle_size: int, seed: int) -> Callable[[Iterator[int]], Iterator[Bundle]]:
    def stream(_: Iterator[int]) -> Iterator[Bundle]:
        return stream_bundles(pieces, inputs, label, epochs, shard, bundle_size, seed)

    return stream


# ---------------------------------------------------------------------------------------------------------
# ``data.cache``: the rows read in the first epoch persisted by Spark, read from there in the others


def persisted_pieces(sc: SparkContext, pieces: Sequence[Piece], inputs: Sequence[Column], label: Column,
                     level: str) -> RDD:
    """The rows of ``pieces`` as an RDD of one partition per piece (its rows as one :data:`Rows` record), read
    on the executors and persisted at ``level`` (``memory``: ``MEMORY_ONLY``, ``disk``: ``DISK_ONLY``).

    Nothing is read here: the first feed job that reads a partition stores it where its task ran; later jobs
    read the stored copy. A ``MEMORY_ONLY`` partition that does not fit the executor's storage memory is not
    kept, and is read from the source again when next needed."""
    from pyspark import StorageLevel

    reader = _piece_reader(tuple(inputs), label)
    rdd = sc.parallelize(list(pieces), len(pieces)).map(reader)
    return rdd.persist(getattr(StorageLevel, STORAGE_LEVELS[level]))


def _piece_reader(inputs: tuple[Column, ...], label: Column) -> Callable[[Piece], Rows]:
    def read(piece: Piece) -> Rows:
        return piece_rows(piece, inputs, label)  # type: ignore[return-value]

    return read


def cached_epoch_feed(sc: SparkContext, slots: Sequence[RDD], epoch: int, bundle_size: int, seed: int,
                      window: int = SHUFFLE_WINDOW) -> RDD:
    """Feed epoch ``epoch`` from persisted rows: partition m streams ``slots[m]`` (an RDD of
    :func:`persisted_pieces`; the same one for every slot with ``same`` data) as bundles, ``window`` pieces'
    rows shuffled together. The pieces come in the order they were persisted, so an epoch's shuffle reaches
    as far as the window (uncached epochs also permute the pieces)."""
    parts = [rdd.coalesce(1).mapPartitions(_cached_streamer(epoch, m, bundle_size, seed, window))
             for m, rdd in enumerate(slots)]
    return sc.union(parts)


def _cached_streamer(epoch: int, shard: int, bundle_size: int, seed: int,
                     window: int) -> Callable[[Iterator[Rows]], Iterator[Bundle]]:
    def stream(chunks: Iterator[Rows]) -> Iterator[Bundle]:
        rng = np.random.default_rng([seed, epoch, shard])
        return _window_bundles(_looked_ahead(iter(lambda: list(itertools.islice(chunks, window)), [])), epoch,
                               shard, bundle_size, rng)

    return stream


def _looked_ahead(windows: Iterator[list[Rows]]) -> Iterator[tuple[list[Rows], bool]]:
    """``(window, final)``: each window and whether it is the last one (read one window ahead)."""
    ahead = next(windows, None)
    while ahead is not None:
        current, ahead = ahead, next(windows, None)
        yield current, ahead is None


def storage_report(sc: SparkContext, rdds: Sequence[RDD]) -> dict:
    """What Spark holds of the persisted ``rdds``, as its storage status reports it: the level, the
    partitions cached and their bytes in memory and on disk (``summary.json``'s ``data_cache``)."""
    ids = {rdd.id() for rdd in rdds}
    infos = [i for i in sc._jsc.sc().getRDDStorageInfo() if i.id() in ids]
    return {"storage_level": str(rdds[0].getStorageLevel()) if rdds else None, "rdds": len(ids),
            "partitions": sum(rdd.getNumPartitions() for rdd in {r.id(): r for r in rdds}.values()),
            "cached_partitions": sum(i.numCachedPartitions() for i in infos),
            "memory_bytes": sum(i.memSize() for i in infos), "disk_bytes": sum(i.diskSize() for i in infos)}
