"""Where a run's Parquet data set comes from when the config names none: a Spark DataFrame the caller passes to
``run(..., data=df)``, or the run's own data file written once as Parquet (``data.as_parquet``).

A DataFrame is written by the executors of its own session, partition by partition, as the toolkit's Parquet
data set (:mod:`ddl_commodity.data.parquet`: a global ``row`` index, arrays as fixed-size lists), and the run
reads that data set as it reads any ``data.source``: the driver sees the schema and the files' footers, never a
row. This is how horovod.spark's store and Petastorm's converter hand a DataFrame to a trainer too; it costs one
pass writing the data set, and the disk to hold it where every node reads (``stage``).
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ddl_commodity.config import RunConfig, config_to_dict, merge, validate
from ddl_commodity.data.parquet import ROW, Column, piece_rows
from ddl_commodity.errors import DataError, UserInputError
from ddl_commodity.experiments.api import Experiment


def with_source(experiment: Experiment, cfg: RunConfig, source: str) -> RunConfig:
    """``cfg`` reading the Parquet data set at ``source``, validated again."""
    raw = merge(config_to_dict(cfg), {"data": {"source": source}})
    return validate(type(cfg), raw, "<config>")


# ---------------------------------------------------------------------------------------------------------
# data.as_parquet


def as_parquet(experiment: Experiment, cfg: RunConfig, progress: bool | None = None) -> RunConfig:
    """``cfg`` reading its own data file as Parquet: the file (generated first if the config asks for it)
    written once beside the cache as ``<cache_dir>/<file name>.parquet/``, with :meth:`Experiment.columns`."""
    from ddl_commodity.data.parquet import write_parquet

    path = experiment.data_file(cfg, progress)
    out = Path(cfg.data.cache_dir) / f"{path.stem}.parquet"
    if not out.is_dir():
        inputs, label = experiment.columns(cfg)
        arrays, labels = experiment.load(cfg, path)
        columns = {c.name: np.asarray(a, dtype=c.dtype) for c, a in zip(inputs, arrays, strict=True)}
        columns[label.name] = np.asarray(labels, dtype=label.dtype)
        group = piece_rows(len(labels))
        print(f"writing {path} as Parquet: {out} ({len(labels)} rows, {group} per row group)", flush=True)
        write_parquet(out, [(0, columns)], rows_per_file=group * 8, row_group_rows=group)
    return with_source(experiment, cfg, str(out))


# ---------------------------------------------------------------------------------------------------------
# run(..., data=<DataFrame>)


def frame_columns(df: Any, inputs: Sequence[Column], label: Column) -> bool:
    """Check the DataFrame's schema against the experiment's columns on the driver (``df.schema`` only): each
    input an array of numbers (a fixed-size list's width is checked as the rows are written), the label a
    number (an integer for an integer label). Returns whether it holds a stored ``row`` index.

    Raises:
        UserInputError: one line naming the column.
    """
    from pyspark.sql import types as T

    fields = {f.name: f.dataType for f in df.schema.fields}
    for c in (*inputs, label):
        kind = fields.get(c.name)
        if kind is None:
            raise UserInputError(f"data: the DataFrame has no column {c.name!r} (has: {', '.join(fields)})")
        if c.shape and not (isinstance(kind, T.ArrayType) and isinstance(kind.elementType, T.NumericType)):
            raise UserInputError(f"data: column {c.name!r} must be an array of {math.prod(c.shape)} numbers per "
                                 f"row (shape {c.shape}), found {kind.simpleString()}")
        if not c.shape and not isinstance(kind, T.NumericType):
            raise UserInputError(f"data: column {c.name!r} must be a number per row, found {kind.simpleString()}")
        if not c.shape and np.dtype(c.dtype).kind == "i" and not isinstance(kind, T.IntegralType):
            raise UserInputError(f"data: column {c.name!r} must hold integers ({c.dtype}), found "
                                 f"{kind.simpleString()}")
    if ROW in fields and not isinstance(fields[ROW], T.IntegralType):
        raise UserInputError(f"data: column {ROW!r} (the stored global row index) must be an integer, found "
                             f"{fields[ROW].simpleString()}")
    return ROW in fields


def stage_frame(df: Any, inputs: Sequence[Column], label: Column, out: str) -> str:
    """Write the DataFrame as a Parquet data set at ``out`` (a new directory or URI) on its session's executors;
    return its URI. Rows are numbered by the stored ``row`` column, else by ``zipWithIndex`` (Fig 5.2), so a
    partition's rows are consecutive global rows; row groups of :func:`~ddl_commodity.data.parquet.piece_rows`
    rows. Written to ``<out>.partial-*`` and moved at the end: a failed write leaves nothing.

    Raises:
        DataError: ``out`` exists, or a row's array has the wrong width (naming the partition and column).
    """
    from pyarrow import fs

    from ddl_commodity.data.parquet import source_uri

    stored = frame_columns(df, inputs, label)
    uri = source_uri(out)
    filesystem, path = fs.FileSystem.from_uri(uri)
    if filesystem.get_file_info(path).type != fs.FileType.NotFound:
        raise DataError(f"{out}: exists; choose a new place to write the DataFrame")
    group = piece_rows(df.count())  # small sets: still pieces to deal and hold out
    partial = f"{path}.partial-{uuid.uuid4().hex[:8]}"
    filesystem.create_dir(partial)
    names = [c.name for c in (*inputs, label)]
    if stored:
        rows = df.select(ROW, *names).sortWithinPartitions(ROW).rdd.map(lambda r: (r[0], r[1:]))
    else:
        rows = df.select(*names).rdd.zipWithIndex().map(lambda r: (r[1], tuple(r[0])))
    writer = _partition_writer(uri[:len(uri) - len(path)] + partial, tuple(inputs), label, group)
    try:
        written = _spark_job(lambda: rows.mapPartitionsWithIndex(writer).collect())
        if not sum(written):
            raise DataError(f"{out}: the DataFrame has no rows")
        filesystem.move(partial, path)
    finally:
        if filesystem.get_file_info(partial).type != fs.FileType.NotFound:
            filesystem.delete_dir(partial)
    return uri


def _spark_job(job: Callable[[], list]) -> list:
    """Run ``job``; a :class:`DataError` raised in a task comes back as itself (one line), not as Spark's trace."""
    from py4j.protocol import Py4JJavaError

    try:
        return job()
    except Py4JJavaError as err:
        found = re.search(r"ddl_commodity\.errors\.DataError: (.*)", str(err.java_exception))
        if found:
            raise DataError(found.group(1).strip()) from None
        raise


def _partition_writer(directory: str, inputs: tuple[Column, ...], label: Column, group: int
                      ) -> Callable[[int, Iterator[tuple[int, tuple]]], Iterator[int]]:
    """Write one partition's ``(global row, values)`` in row order: a file per run of consecutive rows (a
    file of the data set holds consecutive rows), row groups of ``group`` rows. Yields the rows written."""
    def write(partition: int, rows: Iterator[tuple[int, tuple]]) -> Iterator[int]:
        import pyarrow.parquet as pq
        from pyarrow import fs

        from ddl_commodity.data.parquet import to_table

        writer, count, files, following = None, 0, 0, None
        for batch in _consecutive_batches(rows, group):
            if batch[0][0] != following and writer is not None:
                writer.close()
                writer = None
            if writer is None:
                filesystem, path = fs.FileSystem.from_uri(f"{directory}/part-{partition:05d}-{files:04d}.parquet")
                files += 1
            table = to_table(batch[0][0], _columns(batch, inputs, label, partition))
            writer = writer or pq.ParquetWriter(path, table.schema, filesystem=filesystem)
            writer.write_table(table, row_group_size=group)
            count, following = count + len(batch), batch[-1][0] + 1
        if writer is not None:
            writer.close()
        yield count

    return write


def _consecutive_batches(rows: Iterator[tuple[int, tuple]], size: int) -> Iterator[list[tuple[int, tuple]]]:
    """``rows`` in batches of at most ``size`` whose global rows follow one another."""
    batch: list[tuple[int, tuple]] = []
    for row in rows:
        if batch and (len(batch) == size or row[0] != batch[-1][0] + 1):
            yield batch
            batch = []
        batch.append(row)
    if batch:
        yield batch


def _columns(batch: list[tuple[int, tuple]], inputs: tuple[Column, ...], label: Column,
             partition: int) -> dict[str, np.ndarray]:
    out = {}
    for k, c in enumerate((*inputs, label)):
        values = [r[1][k] for r in batch]
        width = math.prod(c.shape)
        if c.shape and any(v is None or len(v) != width for v in values):
            bad = next(v for v in values if v is None or len(v) != width)
            raise DataError(f"DataFrame partition {partition}: column {c.name!r} holds "
                            f"{'null' if bad is None else len(bad)} values in a row, expected {width} "
                            f"(shape {c.shape})")
        out[c.name] = np.asarray(values, dtype=c.dtype).reshape(len(batch), *c.shape)
    return out
