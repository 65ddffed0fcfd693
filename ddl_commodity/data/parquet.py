"""Data sets as sharded Parquet, the form in which data larger than one machine is kept and read.

A data set is a directory (or a glob) of Parquet files on any file system the nodes can reach: a local path
or ``file://`` (a shared disk, or the same path on each node's own disk), ``hdfs://`` and ``s3a://`` (read
through pyarrow's file systems with the user's Hadoop or S3 settings). Every file holds consecutive rows, and
column ``row`` (int64) is each row's global index, so the numbering of Fig 5.2 is the same in every run and
does not depend on which task read what. Arrays are stored flat, as fixed-size lists; their shapes are in
each file's key-value metadata (``ddl.shapes``).

A :class:`Piece` is one row group of one file: the unit a task reads, so no reader ever holds more than one
row group of the data set.
"""

from __future__ import annotations

import fnmatch
import json
import math
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ddl_commodity.errors import DataError

ROW = "row"
SHAPES_KEY = b"ddl.shapes"
#: Rows per row group unless told otherwise: a few MB of spectra, a small unit of work for one task.
ROW_GROUP_ROWS = 512


@dataclass(frozen=True)
class Column:
    """One column of a data set. Args: ``name``; ``shape`` of one row's value (``()`` for a scalar);
    ``dtype`` a NumPy dtype name (``float32``, ``int32``, ``float64``); ``bounds`` ``(low, high)``: every value
    must lie in ``[low, high)`` (a classifier's labels: ``(0, classes)``), or None."""

    name: str
    shape: tuple[int, ...] = ()
    dtype: str = "float32"
    bounds: tuple[float, float] | None = None


@dataclass(frozen=True)
class Piece:
    """Row group ``row_group`` of the file at ``path`` (a URI: ``file:///...``, ``hdfs://...``): ``rows``
    rows, the first of them global row ``first_row``."""

    path: str
    row_group: int
    first_row: int
    rows: int


def write_parquet(out: str | Path, blocks: Iterable[tuple[int, Mapping[str, np.ndarray]]], rows_per_file: int,
                  row_group_rows: int = ROW_GROUP_ROWS) -> Path:
    """Write consecutive blocks of rows as ``part-NNNNN.parquet`` files of ``rows_per_file`` rows into ``out``.

    Args:
        out: the data set's directory; it must not exist. Written into a temporary directory beside it and
            renamed at the end, so a crash never leaves a half-written data set.
        blocks: ``(first global row, {column: array (n, *shape)})``, in row order, the same columns each.
        rows_per_file: rows per file (the last file may hold fewer).
        row_group_rows: rows per row group, the unit one task reads.
    """
    out = Path(out)
    if rows_per_file < 1 or row_group_rows < 1:
        raise DataError(f"{out}: rows per file and per row group must be at least 1")
    if out.exists():
        raise DataError(f"{out}: exists; choose a new directory for the data set")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as err:
        raise DataError(f"{out}: cannot write there: {err.strerror}") from None
    try:
        _write_files(tmp, _rechunk(blocks, rows_per_file), row_group_rows)
        tmp.chmod(0o755)  # mkdtemp's 0700 would keep the data set from other users (a shared disk's nodes)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _rechunk(blocks: Iterable[tuple[int, Mapping[str, np.ndarray]]], rows: int
             ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """The rows of ``blocks`` again, as blocks of exactly ``rows`` rows (the last one fewer)."""
    pending: list[dict[str, np.ndarray]] = []
    held, first = 0, 0
    for start, block in blocks:
        if not pending:
            first = start
        pending.append(dict(block))
        held += len(next(iter(block.values())))
        while held >= rows:
            joined = {k: np.concatenate([b[k] for b in pending]) for k in pending[0]}
            yield first, {k: v[:rows] for k, v in joined.items()}
            rest = {k: v[rows:] for k, v in joined.items()}
            first, held = first + rows, held - rows
            pending = [rest] if held else []
    if held:
        yield first, {k: np.concatenate([b[k] for b in pending]) for k in pending[0]}


def _write_files(directory: Path, files: Iterable[tuple[int, dict[str, np.ndarray]]], row_group_rows: int) -> None:
    import pyarrow.parquet as pq

    for i, (first, columns) in enumerate(files):
        table = to_table(first, columns)
        pq.write_table(table, directory / f"part-{i:05d}.parquet", row_group_size=row_group_rows)


def to_table(first_row: int, columns: Mapping[str, np.ndarray]):
    """An Arrow table of ``columns`` with the global ``row`` index from ``first_row``; shapes in its metadata."""
    import pyarrow as pa

    n = len(next(iter(columns.values())))
    arrays, shapes = {ROW: pa.array(np.arange(first_row, first_row + n, dtype=np.int64))}, {}
    for name, values in columns.items():
        values = np.ascontiguousarray(values)
        shapes[name] = list(values.shape[1:])
        if values.ndim == 1:
            arrays[name] = pa.array(values)
        else:
            width = math.prod(values.shape[1:])
            arrays[name] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), width)
    table = pa.table(arrays)
    return table.replace_schema_metadata({SHAPES_KEY: json.dumps(shapes).encode()})


def source_uri(source: str) -> str:
    """``source`` as a URI pyarrow reads: a local path as ``file://``, ``s3a://`` as ``s3://``."""
    if source.startswith("s3a://"):
        return "s3://" + source.removeprefix("s3a://")
    return source if "://" in source else Path(source).resolve().as_uri()


def filesystem_and_paths(source: str) -> tuple[object, list[str]]:
    """The pyarrow file system of ``source`` and the URIs of its Parquet files, sorted: a file, a directory
    (its ``*.parquet``) or a glob in the last path component."""
    from pyarrow import fs

    head, _, tail = source.rpartition("/")
    pattern = tail if any(ch in tail for ch in "*?[") else None
    uri = source_uri(head if pattern else source)
    try:
        filesystem, path = fs.FileSystem.from_uri(uri)
        prefix = uri[:len(uri) - len(path)] if uri.endswith(path) else ""  # scheme and authority
        info = filesystem.get_file_info(path)
        if info.type == fs.FileType.File:
            return filesystem, [uri]
        if info.type != fs.FileType.Directory:
            raise DataError(f"{source}: no such file or directory")
        found = filesystem.get_file_info(fs.FileSelector(path, recursive=False))
    except (OSError, ValueError) as err:
        raise DataError(f"{source}: cannot read it: {err}") from None
    names = sorted(prefix + i.path for i in found if i.type == fs.FileType.File
                   and fnmatch.fnmatch(i.base_name, pattern or "*.parquet"))
    if not names:
        raise DataError(f"{source}: no Parquet files there")
    return filesystem, names


def pieces(source: str, columns: Iterable[Column] = ()) -> list[Piece]:
    """Every row group of the data set at ``source``, in global row order, read from the files' footers only.

    Raises:
        DataError: naming the file: unreadable or not Parquet, a column of ``columns`` missing or of the wrong
            width or type, or global rows that do not follow one another.
    """
    import pyarrow.parquet as pq
    from pyarrow import fs

    _, paths = filesystem_and_paths(source)
    out: list[Piece] = []
    for path in paths:
        try:
            filesystem, local = fs.FileSystem.from_uri(path)
            with filesystem.open_input_file(local) as f:
                meta = pq.ParquetFile(f).metadata
                schema = meta.schema.to_arrow_schema()
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise DataError(f"{path}: not a readable Parquet file: {err}") from None
        check_schema(path, schema, columns)
        first = _first_row(filesystem, local, meta)
        for g in range(meta.num_row_groups):
            out.append(Piece(path, g, first, meta.row_group(g).num_rows))
            first += meta.row_group(g).num_rows
    _check_numbering(out)
    return out


def _first_row(filesystem: object, path: str, meta: object) -> int:
    """The global row of the file's first row, from the ``row`` column's statistics (or its first value)."""
    import pyarrow.parquet as pq

    if meta.num_rows == 0:
        return 0
    index = meta.schema.to_arrow_schema().get_field_index(ROW)
    stats = meta.row_group(0).column(index).statistics
    if stats is not None and stats.has_min_max:
        return int(stats.min)
    with filesystem.open_input_file(path) as f:
        return int(pq.ParquetFile(f).read_row_group(0, columns=[ROW]).column(0)[0].as_py())


def _check_numbering(found: list[Piece]) -> None:
    expected = 0
    for p in sorted(found, key=lambda p: p.first_row):
        if p.first_row != expected:
            raise DataError(f"{p.path}: row group {p.row_group} starts at global row {p.first_row}, expected "
                            f"{expected}: the files' rows must number 0..N-1 without gaps or overlaps")
        expected += p.rows
    found.sort(key=lambda p: p.first_row)


def check_schema(path: str, schema: object, columns: Iterable[Column]) -> None:
    """Raise :class:`DataError` naming ``path`` if ``schema`` lacks the ``row`` index or a column, or holds one
    of the wrong width or type."""
    import pyarrow as pa

    names = set(schema.names)
    for column in (Column(ROW, (), "int64"), *columns):
        if column.name not in names:
            raise DataError(f"{path}: column {column.name!r} is missing (has: {', '.join(schema.names)})")
        field_type = schema.field(column.name).type
        width = math.prod(column.shape)
        if column.shape:
            if not pa.types.is_fixed_size_list(field_type) or field_type.list_size != width:
                raise DataError(f"{path}: column {column.name!r} must hold {width} values per row "
                                f"(shape {column.shape}), found {field_type}")
            field_type = field_type.value_type
        if field_type != pa.from_numpy_dtype(np.dtype(column.dtype)):
            raise DataError(f"{path}: column {column.name!r} must be {column.dtype}, found {field_type}")


def read_piece(piece: Piece, columns: Iterable[Column]) -> dict[str, np.ndarray]:
    """The rows of one piece: ``row`` (n,) int64 and each column as an array (n, *shape) of its dtype.

    Raises:
        DataError: naming the file and row group: unreadable, or NaN or infinite values in a float column.
    """
    import pyarrow.parquet as pq
    from pyarrow import fs

    columns = list(columns)
    try:
        filesystem, local = fs.FileSystem.from_uri(piece.path)
        with filesystem.open_input_file(local) as f:
            table = pq.ParquetFile(f).read_row_group(piece.row_group, columns=[ROW, *(c.name for c in columns)])
    except (OSError, ValueError) as err:
        raise DataError(f"{piece.path}: row group {piece.row_group} cannot be read: {err}") from None
    out = {ROW: table.column(ROW).to_numpy()}
    for c in columns:
        values = table.column(c.name).combine_chunks()
        flat = values.flatten() if c.shape else values
        array = flat.to_numpy(zero_copy_only=False).astype(c.dtype, copy=False).reshape(len(table), *c.shape)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise DataError(f"{piece.path}: row group {piece.row_group}: column {c.name!r} holds NaN or "
                            "infinite values")
        if c.bounds is not None and len(array) and not (c.bounds[0] <= array.min() and array.max() < c.bounds[1]):
            raise DataError(f"{piece.path}: row group {piece.row_group}: column {c.name!r} holds values outside "
                            f"[{c.bounds[0]:g}, {c.bounds[1]:g}) ({array.min():g} to {array.max():g})")
        out[c.name] = array
    return out

